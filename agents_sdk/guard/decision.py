"""Decisions: the policy's answer about one action, and the records the Guard signs for it.

``Decision.from_result`` is the one reader of a ``data.warden.decision`` result (in
process, from OPA, from ``warden sidecar``); ``fail_closed`` the one deny used when no
trustworthy decision exists. ``intent_payload``, ``decision_payload`` and
``result_payload`` build the signed records' payloads, so ``@guard.tool``, ``govern``
and the framework integrations sign the same shapes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents_sdk.engine.policy import DEFAULT_QUERY
from agents_sdk.errors import ApprovalRequired, PolicyViolationError
from agents_sdk.guard.inputs import printable
from agents_sdk.pointers import masked
from agents_sdk.records import DECISION_EFFECTS

__all__ = [
    "DECISION_PATH",
    "DECISION_QUERY",
    "EFFECTS",
    "FAIL_CLOSED_CONTROLS",
    "MAX_SUMMARY_LENGTH",
    "Decision",
    "Reason",
    "decision_payload",
    "error_summary",
    "fail_closed",
    "intent_payload",
    "raise_unless_allowed",
    "result_payload",
]

DECISION_QUERY = DEFAULT_QUERY
DECISION_PATH = DECISION_QUERY.removeprefix("data.").replace(".", "/")
EFFECTS = DECISION_EFFECTS
# The controls a fail-closed deny answers to: robustness against faults (AI Act art. 15(4)).
FAIL_CLOSED_CONTROLS = ("eu_ai_act.art15(4)",)
_new = object.__new__
# A result summary is a description, not the tool's output: bounded so a huge exception
# message cannot bloat the audit log.
MAX_SUMMARY_LENGTH = 500


@dataclass(frozen=True)
class Reason:
    """Why a decision went the way it did: the policy rule's id, its message, and the
    compliance controls it implements."""

    rule: str
    message: str
    controls: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "message": self.message, "controls": list(self.controls)}


@dataclass(frozen=True)
class Decision:
    """The policy's answer about one action.

    ``effect`` is ``allow``, ``deny`` or ``require_approval``; ``allow`` is true only for
    ``allow``; ``reasons`` name the rules that decided; ``obligations`` are what the
    policy asks of the caller (``log``, ``mask``: JSON pointers into the input to mask in
    the audit log). ``decision_id`` is the sidecar's id when the decision came over HTTP.
    """

    effect: str
    allow: bool
    reasons: tuple[Reason, ...] = ()
    obligations: dict[str, Any] = field(default_factory=dict)
    decision_id: str | None = None

    @property
    def denied(self) -> bool:
        return self.effect == "deny"

    @property
    def requires_approval(self) -> bool:
        return self.effect == "require_approval"

    @property
    def rule(self) -> str | None:
        """The first reason's rule (``malformed-input``, ``engine-error``, a policy rule), if any."""
        return self.reasons[0].rule if self.reasons else None

    def as_dict(self) -> dict[str, Any]:
        """The decision in the policy's own JSON shape."""
        return {
            "allow": self.allow,
            "effect": self.effect,
            "reasons": [reason.as_dict() for reason in self.reasons],
            "obligations": copy.deepcopy(self.obligations),
        }

    @classmethod
    def from_result(cls, result: Any, decision_id: str | None = None) -> Decision:
        """Read a ``data.warden.decision`` result; anything that is not a well-formed
        decision becomes a deny (fail closed). Never raises."""
        if not (type(result) is dict or isinstance(result, Mapping)):
            return fail_closed("malformed-decision", f"The policy answered {type(result).__name__}, not a decision object")
        effect = result.get("effect")
        if effect not in EFFECTS:
            return fail_closed("malformed-decision", f"The policy answered an unknown effect {effect!r:.100}")
        if result.get("allow") is not (effect == "allow"):
            return fail_closed(
                "malformed-decision", f"The policy's allow {result.get('allow')!r:.100} contradicts effect {effect!r}"
            )
        reasons = []
        for raw in result.get("reasons") or ():
            if not (type(raw) is dict or isinstance(raw, Mapping)):
                return fail_closed("malformed-decision", "The policy answered a reason that is not an object")
            controls = raw.get("controls") or ()
            reason = _new(Reason)
            # What the frozen dataclass's __init__ sets, without its object.__setattr__ per field
            # (this runs on every decision).
            reason.__dict__.update(
                rule=str(raw.get("rule", "")),
                message=str(raw.get("message", "")),
                controls=tuple(map(str, controls)) if isinstance(controls, list | tuple) else (),
            )
            reasons.append(reason)
        obligations = result.get("obligations")
        decision = _new(cls)
        decision.__dict__.update(
            effect=effect,
            allow=effect == "allow",
            reasons=tuple(reasons),
            obligations=dict(obligations) if (type(obligations) is dict or isinstance(obligations, Mapping)) else {},
            decision_id=decision_id if isinstance(decision_id, str) else None,
        )
        return decision


def fail_closed(rule: str, message: str) -> Decision:
    """The deny used when no trustworthy decision could be made; ``rule`` says why
    (``no-policy-bundle``, ``engine-error``, ``malformed-input``, ``decision-timeout``, …)."""
    return Decision(
        effect="deny",
        allow=False,
        reasons=(Reason(rule=rule, message=message, controls=FAIL_CLOSED_CONTROLS),),
        obligations={"log": True, "mask": []},
    )


def fail_closed_result(rule: str, message: str) -> dict[str, Any]:
    """``fail_closed`` as the policy's JSON shape (what backends answer)."""
    return fail_closed(rule, message).as_dict()


# -- the records the Guard signs ----------------------------------------------------------


def intent_payload(input: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    """The ``intent`` payload: the tool and its arguments, masked as the decision says."""
    pointers = _mask_pointers(decision)
    if not pointers:  # the usual decision masks nothing: the arguments as they are
        return {"tool": input["action"]["tool"], "args": input["action"]["args"]}
    shown = masked(input, [f"{p}" for p in pointers])
    return {"tool": input["action"]["tool"], "args": shown["action"]["args"]}


def decision_payload(decision: Decision) -> dict[str, Any]:
    """The ``decision`` payload: effect, reasons and the sidecar's decision id if any."""
    payload: dict[str, Any] = {"effect": decision.effect, "reasons": [r.as_dict() for r in decision.reasons]}
    if decision.decision_id:
        payload["decision_id"] = decision.decision_id
    return payload


def result_payload(tool: str, summary: str) -> dict[str, Any]:
    """The ``result`` payload: what the tool gave back (a summary, never the output itself).
    Both are made signable: invalid Unicode and NUL escaped, the summary bounded."""
    return {"summary": printable(summary, MAX_SUMMARY_LENGTH), "tool": printable(tool) if tool else "(no tool name)"}


def error_summary(error: BaseException) -> str:
    """How a tool that raised is summarized: the exception's type and message."""
    return printable(f"raised {type(error).__name__}: {error}", MAX_SUMMARY_LENGTH)


def raise_unless_allowed(tool: str, args: dict[str, Any], decision: Decision) -> None:
    """Return quietly on allow; raise ApprovalRequired on require_approval and
    PolicyViolationError ("<rule>: <message>" of the first reason) on a deny."""
    if decision.effect == "allow":
        return
    first = decision.reasons[0] if decision.reasons else Reason("default-deny", "No policy rule allows this action")
    if decision.effect == "require_approval":
        raise ApprovalRequired(
            f"{tool} requires approval: {first.rule}: {first.message}",
            tool=tool,
            args=args,
            reasons=decision.reasons,
            decision=decision,
        )
    raise PolicyViolationError(f"{first.rule}: {first.message}", decision=decision, tool=tool)


def _mask_pointers(decision: Decision) -> list[object]:
    pointers = decision.obligations.get("mask")
    return list(pointers) if isinstance(pointers, list | tuple) else []
