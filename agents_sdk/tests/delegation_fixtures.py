"""Three agents and a registry as a bundle carries it, for the delegation tests."""

from __future__ import annotations

import copy
import time
from typing import Any

from agents_sdk.delegation import encode_chain, issue_grant
from agents_sdk.identity import AgentIdentity

SCOPES = {
    "orchestrator": ["email:send", "payments:create", "read:docs", "read:tickets", "write:files"],
    "researcher": ["email:send", "payments:create", "read:docs", "read:tickets", "write:files"],
    "executor": ["email:send", "payments:create", "read:docs", "read:tickets", "write:files"],
}
TOOLS = {
    "doc_search": {"scopes": ["read:docs"]},
    "ticket_read": {"scopes": ["read:tickets"]},
    "file_write": {"scopes": ["write:files"], "category": "file"},
    "payment_create": {"scopes": ["payments:create"], "category": "payment"},
    "email_send": {"scopes": ["email:send"], "category": "email"},
}


class Team:
    """orchestrator → researcher → executor, each with its own key, and their registry."""

    def __init__(self) -> None:
        self.ids = {name: AgentIdentity.create(name, "team@example.com", scopes) for name, scopes in SCOPES.items()}
        self.registry: dict[str, Any] = {
            "agents": {
                name: {"status": "active", "owner": "team@example.com", "scopes": list(scopes),
                       "key_ids": [self.ids[name].key_id]}
                for name, scopes in SCOPES.items()
            },
            "tools": copy.deepcopy(TOOLS),
            "protected_paths": [],
            "approvals": {},
            "delegation": {
                "keys": {i.key_id: {"agent": name, "public_key": i.public_key_b64} for name, i in self.ids.items()},
                "authorities": {},
                "rules": {
                    "orchestrator": {"may_delegate_to": ["researcher"]},
                    "researcher": {"may_delegate_to": ["executor"]},
                },
                "revoked": [],
                "max_depth": 3,
                "max_lifetime_seconds": 3600,
            },
        }

    def data(self) -> dict[str, Any]:
        return {"warden_registry": self.registry}

    def grant(self, issuer: str, audience: str, scopes: list[str], session: str, **options: Any) -> dict[str, Any]:
        return issue_grant(self.ids[issuer], issuer=issuer, audience=audience,
                           audience_key_id=self.ids[audience].key_id, scopes=scopes, session=session, **options)

    def chain(self, now: int | None = None, **leaf: Any) -> list[dict[str, Any]]:
        """orchestrator (session s-orch) → researcher (s-res) → executor (s-exe)."""
        now = int(time.time()) if now is None else now
        first = self.grant("orchestrator", "researcher", ["read:docs", "write:files", "payments:create"], "s-res",
                           parent_session="s-orch", constraints={"path_prefix": "/data/", "max_amount": 500}, now=now)
        options: dict[str, Any] = {"constraints": {"path_prefix": "/data/reports/", "max_amount": 100}, "now": now}
        options.update(leaf)
        second = self.grant("researcher", "executor", options.pop("scopes", ["read:docs", "write:files"]), "s-exe",
                            parent=first, **options)
        return [first, second]

    def token(self, **leaf: Any) -> str:
        return encode_chain(self.chain(**leaf))
