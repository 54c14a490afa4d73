"""Policy enforcement for an agent's tool calls: ``Guard`` and its two backends.

    guard = Guard(identity, EmbeddedBackend(bundle_client), environment="prod")
    decision = guard.check("file_delete", {"path": "/prod/x"}, session_id="s-1")

- ``agents_sdk.guard.decision``: ``Decision``, ``Reason``, ``fail_closed`` and the payloads
  of the records the Guard signs;
- ``agents_sdk.guard.backends``: ``DecisionBackend``, ``EmbeddedBackend``, ``OPAHTTPBackend``;
- ``agents_sdk.guard.inputs``: what may reach the engine (``malformed-input`` otherwise);
- ``agents_sdk.guard.guard``: ``Guard`` itself.

Everything is re-exported here, so ``from agents_sdk.guard import Guard`` keeps working.
"""

from agents_sdk.guard.backends import DecisionBackend, EmbeddedBackend, OPAHTTPBackend
from agents_sdk.guard.decision import (
    DECISION_PATH,
    DECISION_QUERY,
    EFFECTS,
    FAIL_CLOSED_CONTROLS,
    Decision,
    Reason,
    decision_payload,
    error_summary,
    fail_closed,
    intent_payload,
    raise_unless_allowed,
    result_payload,
)
from agents_sdk.guard.guard import Guard
from agents_sdk.guard.inputs import input_problem
from agents_sdk.pointers import masked

__all__ = [
    "DECISION_PATH",
    "DECISION_QUERY",
    "EFFECTS",
    "FAIL_CLOSED_CONTROLS",
    "Decision",
    "DecisionBackend",
    "EmbeddedBackend",
    "Guard",
    "OPAHTTPBackend",
    "Reason",
    "decision_payload",
    "error_summary",
    "fail_closed",
    "input_problem",
    "intent_payload",
    "masked",
    "raise_unless_allowed",
    "result_payload",
]
