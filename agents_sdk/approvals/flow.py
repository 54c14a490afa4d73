"""From a held call to a call that runs exactly once under a person's grant.

``obtain_approval`` is what ``Guard`` (``@guard.tool``, ``enforce``) and ``govern`` (the
framework integrations, the MCP proxy) call on ``require_approval`` when the Guard has an
``ApprovalClient``:

1. file the request (idempotent; spooled when the control plane is unreachable);
2. ``on_approval="raise"`` (default): raise ``ApprovalRequired`` with the request id and URL;
   ``"wait"``: long-poll until the person decides (``ApprovalDenied`` / ``ApprovalExpired``);
3. verify the grant offline and check it binds this agent, environment, tool and arguments;
4. decide again with ``approval_token`` once the engine's bundle carries the grant;
5. consume the grant in the host's ledger (atomic: one use), sign an ``approval`` record
   ``consumed`` (the control plane marks the grant consumed when the record arrives), and
   return the allow decision. The caller then runs the call, once.

Every step is signed in the call's session as an ``approval`` record, so the audit log
shows request, decision, approval and consumption next to the intent and the result.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Mapping
from typing import Any

from agents_sdk.approvals.client import FINAL_STATES, ApprovalClient
from agents_sdk.approvals.grants import args_sha256, binding_failures, read_grant
from agents_sdk.errors import ApprovalDenied, ApprovalExpired, ApprovalRequired, PolicyViolationError
from agents_sdk.guard.decision import Decision, Reason

__all__ = ["GRANT_REJECTED", "obtain_approval"]

GRANT_REJECTED = "approval-grant-rejected"
# How long, after the grant arrived, the engine may take to activate the bundle carrying it.
BUNDLE_WAIT_SECONDS = 30.0
_CONTROLS = ("eu_ai_act.art14(4)(d)", "soc2.CC5.1")


def obtain_approval(guard: Any, input: dict[str, Any], decision: Decision) -> tuple[Decision, dict[str, Any]]:
    """The allow decision for ``input`` under a consumed grant, and the input it was decided
    with (``context.approval_token`` set). Raises ApprovalRequired (request id and URL;
    ApprovalUnreachable when spooled), ApprovalDenied, ApprovalExpired, or
    PolicyViolationError (``approval-grant-rejected: …``) when the grant does not bind this
    call or was used already."""
    client: ApprovalClient = guard.approvals
    action = input["action"]
    tool, args = action["tool"], dict(action.get("args") or {})
    context = input.get("context") or {}
    session_id = guard.session_of(input)
    ticket = client.file(input, decision)
    _record(guard, session_id, "requested", ticket.request_id, tool=tool, args_sha256=args_sha256(args), url=ticket.url)
    if guard.on_approval != "wait":
        raise ApprovalRequired(
            f"{tool} requires approval: request {ticket.request_id} waits for a person at {ticket.url}",
            tool=tool, args=args, reasons=decision.reasons, decision=decision,
            request_id=ticket.request_id, url=ticket.url,
        )
    if ticket.state not in FINAL_STATES:
        ticket = client.wait(ticket.request_id, guard.approval_timeout)
    if ticket.state == "denied":
        _record(guard, session_id, "denied", ticket.request_id, comment=ticket.comment, decided_by=list(ticket.decided_by))
        raise ApprovalDenied(
            f"approval {ticket.request_id} for {tool} was denied: {ticket.comment or 'no comment'}",
            request_id=ticket.request_id, comment=ticket.comment, decided_by=ticket.decided_by,
        )
    if ticket.state != "approved" or not ticket.grant:
        state = ticket.state if ticket.state in FINAL_STATES else "pending"
        _record(guard, session_id, "expired", ticket.request_id, state=state)
        raise ApprovalExpired(
            f"approval {ticket.request_id} for {tool} is {state}"
            + (f" after waiting {guard.approval_timeout:g} s" if state == "pending" else ""),
            request_id=ticket.request_id, state=state,
        )
    verification = client.verification or getattr(getattr(guard.backend, "bundles", None), "verification", None)
    try:
        claims = read_grant(ticket.grant, verification)
    except ValueError as exc:
        raise _rejected(guard, session_id, ticket.request_id, "?", f"the grant is not usable: {exc}", tool) from exc
    grant_id = str(claims.get("jti", ""))
    failures = binding_failures(
        claims, agent=guard.identity.name, environment=context.get("environment"), tool=tool, args=args
    )
    if failures:
        raise _rejected(guard, session_id, ticket.request_id, grant_id, ", ".join(failures), tool)
    _record(guard, session_id, "approved", ticket.request_id, grant_id=grant_id, decided_by=list(ticket.decided_by))
    granted = copy.deepcopy(input)
    granted.setdefault("context", {})["approval_token"] = grant_id
    _wait_for_grant_in_bundle(guard, granted, time.monotonic() + BUNDLE_WAIT_SECONDS)
    final = guard.decide(granted)
    if final.effect != "allow":
        first = final.reasons[0] if final.reasons else Reason("default-deny", "No policy rule allows this action")
        raise PolicyViolationError(f"{first.rule}: {first.message}", decision=final, tool=tool)
    if not client.ledger.consume(grant_id, detail={"request_id": ticket.request_id, "tool": tool}):
        raise _rejected(guard, session_id, ticket.request_id, grant_id, "consumed", tool)
    _record(guard, session_id, "consumed", ticket.request_id, grant_id=grant_id, args_sha256=claims["args_sha256"])
    return final, granted


def consume_presented_grant(guard: Any, input: Mapping[str, Any], decision: Decision) -> None:
    """A call allowed under an ``approval_token`` the caller gave: consume it in the ledger
    first (a second use on this host is refused, naming ``consumed``), and sign it."""
    token = (input.get("context") or {}).get("approval_token")
    client = getattr(guard, "approvals", None)
    if not token or client is None or decision.effect != "allow":
        return
    session_id = guard.session_of(input)
    tool = input["action"]["tool"]
    if not client.ledger.consume(str(token)):
        raise _rejected(guard, session_id, "", str(token), "consumed", tool)
    _record(guard, session_id, "consumed", "", grant_id=str(token), args_sha256=args_sha256(input["action"]["args"]))


def _rejected(guard: Any, session_id: str, request_id: str, grant_id: str, failed: str, tool: str) -> PolicyViolationError:
    message = f"Approval grant {grant_id} does not bind this action: {failed}"
    _record(guard, session_id, "refused", request_id, grant_id=grant_id, failed=failed)
    decision = Decision(effect="deny", allow=False, reasons=(Reason(GRANT_REJECTED, message, _CONTROLS),))
    if guard.signer is not None:
        guard.signer.sign_record(session_id, "decision", {"effect": "deny", "reasons": [r.as_dict() for r in decision.reasons]})
    return PolicyViolationError(f"{GRANT_REJECTED}: {message}", decision=decision, tool=tool)


def _record(guard: Any, session_id: str, event: str, request_id: str, **fields: Any) -> None:
    if guard.signer is not None:
        guard.signer.sign_record(session_id, "approval", {"event": event, "request_id": request_id, **fields})


def _grant_not_in_bundle_yet(decision: Decision) -> bool:
    # The only failed binding is "unknown": the engine's bundle predates the grant.
    return decision.effect == "deny" and any(
        r.rule == GRANT_REJECTED and r.message.endswith(": unknown") for r in decision.reasons
    )


def _wait_for_grant_in_bundle(guard: Any, input: dict[str, Any], deadline: float) -> None:
    """Until the engine's bundle carries the grant: woken by bundle activations when the
    backend has a bundle client, else re-asking with a growing pause (a sidecar)."""
    bundles = getattr(guard.backend, "bundles", None)
    activated = _activation_event(bundles) if bundles is not None else None
    pause = 0.02
    while time.monotonic() < deadline:
        if activated is not None:
            activated.clear()
        raw, decision_id = guard.backend.decide(input, timeout=guard.timeout)
        if not _grant_not_in_bundle_yet(Decision.from_result(raw, decision_id)):
            return
        remaining = deadline - time.monotonic()
        if activated is not None:
            activated.wait(min(remaining, 1.0))
        else:
            time.sleep(max(0.0, min(pause, remaining)))
            pause = min(pause * 2, 0.5)


_events_lock = threading.Lock()


def _activation_event(bundles: Any) -> threading.Event:
    with _events_lock:
        event = getattr(bundles, "_warden_approval_activated", None)
        if event is None:
            event = threading.Event()
            bundles.add_listener(lambda _bundle: event.set())
            bundles._warden_approval_activated = event
        return event
