"""Warden inside the agent frameworks: one governed tool call, whatever the framework.

Each integration (``agents_sdk.integrations.langchain``, ``.openai_agents``,
``.haystack``, ``.mcp_proxy``) puts a ``Guard`` in its framework's own interception
point and goes through ``govern`` here, so they all behave alike:

- **allow**: the tool runs; its result is signed (``record_result``);
- **deny**: the tool never runs; the model receives the policy's reason
  (``"<rule>: <message>"``) as the tool's result, so it can recover;
- **require_approval**: the tool never runs; the model receives
  ``"waiting for human approval: <rule>: <message>"``; plain code gets
  ``ApprovalRequired`` from ``GovernedCall.raise_for_decision``. With an
  ``ApprovalClient`` on the Guard the request is filed and the model reads
  ``"waiting for human approval <request id>: …"``; with ``on_approval="wait"`` the call
  waits for the person and runs once under the grant, or the model reads the denial.

The intent and the decision are signed by ``Guard.check`` (when the Guard has a
signer); ``govern`` adds the ``result`` record: a summary of what the tool returned, or
that it was not run. Importing this package imports no framework.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agents_sdk.approvals.client import ApprovalUnreachable
from agents_sdk.errors import ApprovalDenied, ApprovalExpired, ApprovalRequired, PolicyViolationError
from agents_sdk.guard import Decision, Guard, Reason, error_summary, raise_unless_allowed

APPROVAL_PREFIX = "waiting for human approval: "
"""How a held call reads to a model (and to a person reading the transcript)."""

Summarizer = Callable[[Any], str]

__all__ = [
    "APPROVAL_PREFIX",
    "GovernedCall",
    "govern",
    "refusal_message",
    "summarize_result",
]


def _reason_text(decision: Decision) -> str:
    reasons = decision.reasons or (Reason("default-deny", "No policy rule allows this action"),)
    return "; ".join(f"{reason.rule}: {reason.message}" for reason in reasons)


def refusal_message(decision: Decision) -> str | None:
    """What the model reads instead of the tool's result, or None when the call is allowed.

    A deny reads ``"<rule>: <message>"`` (every reason, ``; ``-separated); a held call
    ``"waiting for human approval: <rule>: <message>"``.
    """
    if decision.effect == "allow":
        return None
    if decision.effect == "require_approval":
        return APPROVAL_PREFIX + _reason_text(decision)
    return _reason_text(decision)


def summarize_result(result: Any) -> str:
    """The signed summary of a tool's result: its type, size and SHA-256, never its content.

    The hash lets an auditor holding the transcript prove which result the agent got,
    without the audit log carrying (possibly sensitive) tool output.
    """
    if isinstance(result, bytes):
        raw = result
    elif isinstance(result, str):
        raw = result.encode("utf-8")
    else:
        try:
            raw = json.dumps(result, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError):
            raw = repr(result).encode("utf-8", "replace")
    return f"returned {type(result).__name__} ({len(raw)} bytes, sha256:{hashlib.sha256(raw).hexdigest()})"


@dataclass
class GovernedCall:
    """One tool call after the policy decided it; obtained from ``govern``."""

    guard: Guard
    tool: str
    args: dict[str, Any]
    decision: Decision
    session_id: str | None
    # Set when the held call was filed as an approval request (agents_sdk.approvals).
    approval_request_id: str | None = None
    approval_error: BaseException | None = None

    @property
    def allowed(self) -> bool:
        return self.decision.effect == "allow"

    @property
    def message(self) -> str | None:
        """What the model reads instead of the result (None when allowed)."""
        if self.approval_request_id and self.decision.effect == "require_approval":
            return f"{APPROVAL_PREFIX.rstrip(': ')} {self.approval_request_id}: {_reason_text(self.decision)}"
        if isinstance(self.approval_error, ApprovalUnreachable):  # spooled, not filed: say so
            return (f"{APPROVAL_PREFIX.rstrip(': ')} (not filed yet: the control plane is unreachable; the request "
                    f"is spooled and sent again): {_reason_text(self.decision)}")
        return refusal_message(self.decision)

    def record_result(self, result: Any, *, summarize: Summarizer | None = None) -> None:
        """Sign a ``result`` record for what the tool returned (``summarize`` overrides the
        default type/size/SHA-256 summary). Does nothing without a signer."""
        self._sign(summarize(result) if summarize is not None else summarize_result(result))

    def record_error(self, error: BaseException) -> None:
        """Sign a ``result`` record for a tool that raised."""
        self._sign(error_summary(error))

    def record_refusal(self) -> None:
        """Sign a ``result`` record saying the tool was not run, and what the model was told."""
        self._sign(f"not run ({self.decision.effect}): {self.message}")

    def raise_for_decision(self) -> None:
        """For plain code: raise PolicyViolationError on a deny, ApprovalRequired when a
        person must approve first (ApprovalDenied / ApprovalExpired after a wait); return
        quietly when allowed."""
        if self.approval_error is not None:
            raise self.approval_error
        raise_unless_allowed(self.tool, self.args, self.decision)

    def _sign(self, summary: str) -> None:
        if self.session_id is not None:
            self.guard.record_result(self.session_id, self.tool, summary)


def govern(guard: Guard, tool: str, args: Mapping[str, Any] | None = None, **context: Any) -> GovernedCall:
    """Decide (and, with a signer, sign the intent and the decision of) one tool call.

    ``context`` goes to the policy input as ``Guard.check`` takes it (``server=`` for an
    MCP server's name, ``session_id=``, ``approval_token=``, …). Never raises for a policy
    outcome: read ``allowed`` / ``message``, or call ``raise_for_decision``.
    """
    call_args = dict(args or {})
    input = guard.build_input(tool, call_args, **context)
    # Guard.decide signs intent and decision in the session the input names, which the
    # result record must share: so the input is built here, once.
    decision = guard.decide(input)
    if getattr(guard, "approvals", None) is None:
        return GovernedCall(guard, tool, call_args, decision, guard.session_of(input))
    try:
        decision, input = guard.resolve(input, decision)
    except ApprovalRequired as exc:
        return GovernedCall(guard, tool, call_args, decision, guard.session_of(input), exc.request_id, exc)
    except (ApprovalDenied, ApprovalExpired) as exc:
        rule = "approval-denied" if isinstance(exc, ApprovalDenied) else "approval-expired"
        refused = Decision(effect="deny", allow=False, reasons=(Reason(rule, str(exc)),))
        return GovernedCall(guard, tool, call_args, refused, guard.session_of(input), exc.request_id, exc)
    except PolicyViolationError as exc:
        refused = exc.decision if isinstance(exc.decision, Decision) else decision
        return GovernedCall(guard, tool, call_args, refused, guard.session_of(input), None, exc)
    return GovernedCall(guard, tool, call_args, decision, guard.session_of(input))
