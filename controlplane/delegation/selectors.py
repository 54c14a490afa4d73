"""Reads for delegation: what a bundle carries, and how sessions link through delegation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.utils import timezone

from agents_sdk.delegation import DEFAULT_MAX_DEPTH, DEFAULT_MAX_LIFETIME
from controlplane.delegation.models import DelegationAuthority, DelegationRule, Revocation
from controlplane.identity.models import AgentKey


def delegation_registry_data(agent_names: Iterable[str]) -> dict[str, Any]:
    """``data.warden_registry.delegation`` for an environment running ``agent_names``: the
    current keys of those agents (the verifier's trust roots), the authority key for
    person-issued grants, each agent's rule, the default limits and unexpired revocations."""
    # A bundle build's stand-in holds the names as a frozenset already: 100,000 of them per change.
    names = getattr(agent_names, "names", None) or set(agent_names)
    # A bundle build passes a stand-in that encodes the keys itself, incrementally
    # (controlplane.bundles.registry): at 100,000 agents reading them here took minutes.
    keys = getattr(agent_names, "delegation_keys", None)
    if keys is None:
        keys = {
            key_id: {"agent": agent, "public_key": public_key, "created": int(created_at.timestamp())}
            for key_id, agent, public_key, created_at in AgentKey.objects.filter(revoked_at__isnull=True).values_list(
                "key_id", "agent__name", "public_key", "created_at"
            ).iterator(chunk_size=5000)
            if agent in names
        }
    authorities = {
        row.key_id: {"public_key": row.public_key, "created": int(row.created_at.timestamp())}
        for row in DelegationAuthority.objects.filter(is_active=True)
    }
    rules = {}
    for rule in DelegationRule.objects.select_related("agent"):  # few rows: no IN list of every agent name
        if rule.agent.name not in names:
            continue
        entry: dict[str, Any] = {"may_delegate_to": list(rule.may_delegate_to)}
        if rule.may_act_for:
            entry["may_act_for"] = list(rule.may_act_for)
        if rule.max_depth is not None:
            entry["max_depth"] = rule.max_depth
        if rule.max_lifetime_seconds is not None:
            entry["max_lifetime_seconds"] = rule.max_lifetime_seconds
        rules[rule.agent.name] = entry
    now = timezone.now()
    revoked = sorted(
        Revocation.objects.exclude(expires_at__lt=now).values_list("grant_hash", flat=True)
    )
    return {"keys": keys, "authorities": authorities, "rules": rules, "revoked": revoked,
            "max_depth": DEFAULT_MAX_DEPTH, "max_lifetime_seconds": DEFAULT_MAX_LIFETIME}


def linked_sessions(session_id: str) -> dict[str, Any]:
    """The sessions ``session_id`` was delegated from (root first) and those it delegated to,
    from the verified chains that signed intent records carry."""
    from controlplane.audit.models import AuditEvent

    own = (AuditEvent.objects.filter(session_id=session_id, kind="intent", payload__delegation__isnull=False)
           .select_related("agent").order_by("-time").first())
    parents: list[dict[str, Any]] = []
    if own is not None:
        delegation = own.payload["delegation"]
        chain = list(delegation.get("chain") or [])
        sessions = list(delegation.get("sessions") or [])
        # Every principal before the acting agent, root first, with the session it acted in.
        parents = [{"principal": who, "session_id": sid} for who, sid in zip(chain[:-1], sessions[:-1], strict=False)]
    children: dict[str, dict[str, Any]] = {}
    for event in (AuditEvent.objects.filter(kind="intent", payload__delegation__parent_session=session_id)
                  .select_related("agent").order_by("time")):
        children.setdefault(event.session_id, {"agent": event.agent.name, "session_id": event.session_id,
                                               "chain": event.payload["delegation"].get("chain", [])})
    return {"session_id": session_id, "agent": own.agent.name if own else None,
            "chain": own.payload["delegation"].get("chain", []) if own else [],
            "parents": parents, "children": list(children.values())}
