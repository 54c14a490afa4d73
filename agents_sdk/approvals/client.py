"""The agent's side of the approval API: file a request, wait for the person's decision.

Requests are signed with the agent's own key (the headers of audit uploads,
``agents_sdk.shipper.request_headers``), carry an idempotency key derived from the held
action, and are spooled on disk when the control plane cannot be reached: the call does
not run, the agent gets ``ApprovalUnreachable``, and the next ``file`` or ``flush_spool``
sends the spooled request again (the same key: still one request).

The wait is a long poll: ``GET /api/v1/approvals/requests/<id>/wait/?timeout=N`` is held by
the server until the state changes or N seconds pass, so a decision reaches the agent as
soon as it is made, without busy polling.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents_sdk.approvals.grants import GrantLedger, args_sha256
from agents_sdk.bundles.keys import VerificationConfig
from agents_sdk.errors import ApprovalRequired, WardenError
from agents_sdk.identity import AgentIdentity
from agents_sdk.pointers import masked
from agents_sdk.records import canonical_json
from agents_sdk.shipper import request_headers

__all__ = ["ApprovalClient", "ApprovalTicket", "ApprovalUnreachable", "FINAL_STATES"]

FINAL_STATES = ("approved", "denied", "expired", "cancelled")
# One long poll holds at most this long; the client asks again until its own deadline.
MAX_POLL_SECONDS = 55


class ApprovalUnreachable(ApprovalRequired):
    """The approval request could not reach the control plane; it is spooled and sent again
    at the next ``file``/``flush_spool``. The call did not run."""


@dataclass(frozen=True)
class ApprovalTicket:
    """A filed request: its id, the URL a person opens to decide it, and its state."""

    request_id: str
    url: str
    state: str
    grant: str | None = None
    comment: str = ""
    decided_by: tuple[str, ...] = ()
    body: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> ApprovalTicket:
        grant = answer.get("grant")
        return cls(
            request_id=str(answer["id"]),
            url=str(answer.get("url", "")),
            state=str(answer.get("state", "")),
            grant=grant.get("token") if isinstance(grant, Mapping) else None,
            comment=str(answer.get("comment") or ""),
            decided_by=tuple(str(v) for v in answer.get("decided_by") or ()),
            body=dict(answer),
        )


class ApprovalClient:
    """Files approval requests for one agent and waits for their decisions.

    ``base_url`` is the control plane (``https://warden.example.com``); ``spool_dir`` keeps
    requests that could not be sent; ``ledger_dir`` is where used grants are recorded (share
    it between the agent's processes on a host: a grant is then used once among them);
    ``verification`` the bundle signing key(s), to verify grants offline (default: the keys
    the Guard's bundle client trusts).
    """

    def __init__(
        self,
        identity: AgentIdentity,
        base_url: str,
        *,
        spool_dir: str | os.PathLike[str],
        ledger_dir: str | os.PathLike[str] | None = None,
        verification: VerificationConfig | None = None,
        timeout: float = 10.0,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"control plane URL {base_url!r} must start with http:// or https://")
        self.identity = identity
        self.base_url = base_url.rstrip("/")
        self.spool = Path(spool_dir)
        self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ledger = GrantLedger(ledger_dir if ledger_dir is not None else self.spool / "used-grants")
        self.verification = verification
        self.timeout = timeout

    # -- requests ---------------------------------------------------------------------

    def request_body(self, input: Mapping[str, Any], decision: Any) -> dict[str, Any]:
        """The request for a held call: the exact arguments (for the grant), their masked
        form (for people), their hash, the reasons, and an idempotency key for the action."""
        action = input["action"]
        context = input.get("context") or {}
        args = dict(action.get("args") or {})
        pointers = list((decision.obligations or {}).get("mask") or [])
        shown = masked(dict(input), pointers)["action"]["args"]
        digest = args_sha256(args)
        key_material = {
            "agent": self.identity.name,
            "environment": context.get("environment"),
            "session_id": context.get("session_id"),
            "tool": action["tool"],
            "args_sha256": digest,
        }
        return {
            "idempotency_key": hashlib.sha256(canonical_json(key_material)).hexdigest(),
            "environment": context.get("environment") or "",
            "session_id": context.get("session_id") or "",
            "tool": action["tool"],
            "args": args,
            "masked_args": shown,
            "args_sha256": digest,
            "reasons": [reason.as_dict() for reason in decision.reasons],
            "on_behalf_of": list(context.get("on_behalf_of") or []),
            "decision_id": decision.decision_id or "",
        }

    def file(self, input: Mapping[str, Any], decision: Any) -> ApprovalTicket:
        """File (or find: idempotent) the request for a held call. Raises ApprovalUnreachable
        (the request is spooled) when the control plane cannot be reached or answers 5xx."""
        body = self.request_body(input, decision)
        self.flush_spool()
        try:
            return self._post(body)
        except _Unreachable as exc:
            self._spool(body)
            raise ApprovalUnreachable(
                f"{body['tool']} requires approval, and the control plane is unreachable ({exc}); "
                "the request is spooled and will be sent again",
                tool=body["tool"], args=body["args"], reasons=decision.reasons, decision=decision,
            ) from exc

    def flush_spool(self) -> int:
        """Send spooled requests; returns how many were accepted. Stops at the first failure."""
        sent = 0
        for path in sorted(self.spool.glob("*.request.json")):
            try:
                body = json.loads(path.read_bytes())
                self._post(body)
            except _Unreachable:
                break
            except (OSError, ValueError, _Refused):
                pass  # refused for good (4xx) or unreadable: it must not block the others
            path.unlink(missing_ok=True)
            sent += 1
        return sent

    def spooled(self) -> int:
        return len(list(self.spool.glob("*.request.json")))

    def _spool(self, body: Mapping[str, Any]) -> None:
        target = self.spool / f"{body['idempotency_key']}.request.json"
        temporary = target.with_suffix(".tmp")
        temporary.write_bytes(canonical_json(dict(body)))
        os.replace(temporary, target)

    def _post(self, body: Mapping[str, Any]) -> ApprovalTicket:
        raw = canonical_json(dict(body))
        answer = self._call("POST", "/api/v1/approvals/requests/", raw, self.timeout)
        return ApprovalTicket.from_answer(answer)

    # -- waiting ----------------------------------------------------------------------

    def get(self, request_id: str) -> ApprovalTicket:
        return ApprovalTicket.from_answer(self._call("GET", self._wait_path(request_id, 0), b"", self.timeout))

    def wait(self, request_id: str, timeout: float) -> ApprovalTicket:
        """The request once it is decided (or its state when ``timeout`` seconds passed):
        long polls, each held by the server until the state changes."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            remaining = deadline - time.monotonic()
            hold = int(max(0, min(MAX_POLL_SECONDS, remaining)))
            ticket = ApprovalTicket.from_answer(
                self._call("GET", self._wait_path(request_id, hold), b"", hold + self.timeout)
            )
            if ticket.state in FINAL_STATES or time.monotonic() >= deadline:
                return ticket

    def _wait_path(self, request_id: str, hold: int) -> str:
        return f"/api/v1/approvals/requests/{urllib.parse.quote(request_id, safe='')}/wait/?timeout={hold}"

    def _call(self, method: str, path: str, body: bytes, timeout: float) -> dict[str, Any]:
        request = urllib.request.Request(self.base_url + path, data=body if method == "POST" else None, method=method)
        for name, value in request_headers(self.identity, body).items():
            request.add_header(name, value)
        if method == "POST":
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) checked above
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode("utf-8", "replace")
            if exc.code >= 500:
                raise _Unreachable(f"HTTP {exc.code}") from exc
            raise _Refused(f"the control plane refused {method} {path}: HTTP {exc.code} {detail}") from exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise _Unreachable(str(getattr(exc, "reason", exc))) from exc
        if not isinstance(answer, dict) or "id" not in answer:
            raise _Refused(f"the control plane answered {method} {path} with something that is not a request")
        return answer


class _Unreachable(WardenError):
    """No answer, or a 5xx: worth retrying (never escapes ``ApprovalClient``)."""


class _Refused(WardenError, ValueError):
    """A 4xx: retrying the same request will not help (the message says why)."""
