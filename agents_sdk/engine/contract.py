"""Warden's input contract in Python: the checks rego/warden/contract.rego makes, plus what
only the enforcement point can see (numbers the JSON parser rounded, text JSON cannot carry).

The pack enforces the contract itself, so a real OPA sidecar and the embedded engine give
the same answer; enforcement points call this before evaluating so that input which cannot
even reach an engine intact is denied with the same `malformed-input` reason:

    violations = input_violations(request)
    if violations:
        return malformed_input_decision(violations)

`parse_request(text)` reads a request body and reports numbers that binary64 cannot hold
exactly (``100.000000000000001``, integers beyond 2^53) instead of silently rounding them.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_EXACT_INTEGER = 2**53
MAX_DEPTH = 64
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")
_CONTROLS = ["eu_ai_act.art15(4)", "hipaa.164.312(a)(1)"]

Violation = tuple[str, str]  # (field below input, what it must be)


class _LossyNumber(float):
    """A float parsed from JSON text that binary64 cannot represent exactly."""


def parse_request(text: str | bytes) -> tuple[Any, list[Violation]]:
    """Parse a JSON request body; return (value, violations for numbers that lose precision).

    Raises ValueError when the text is not JSON.
    """
    lossy: list[str] = []

    def exact_float(token: str) -> float:
        value = float(token)
        try:
            # Lossy when the shortest text of the parsed double denotes another number:
            # "0.1" survives, "100.000000000000001" becomes 100.0.
            if not math.isfinite(value) or Decimal(token) != Decimal(repr(value)):
                lossy.append(token)
        except InvalidOperation:
            lossy.append(token)
        return value

    def exact_int(token: str) -> int:
        value = int(token)
        if abs(value) > MAX_EXACT_INTEGER:
            lossy.append(token)
        return value

    value = json.loads(text, parse_float=exact_float, parse_int=exact_int, parse_constant=_refuse_constant)
    return value, [("(number)", f"a number a binary64 double holds exactly ({token[:40]} would be rounded)") for token in lossy]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _strings_array(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _exact_count(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and 0 <= value <= MAX_EXACT_INTEGER and value == math.floor(value)


def input_violations(request: Any) -> list[Violation]:
    """Every way `request` breaks the input contract, as (field, expectation) pairs,
    the fields named as the pack's `malformed-input` reasons name them."""
    found: list[Violation] = []
    found.extend(_json_violations(request))
    if not _is_object(request):
        found.append(("input", "a JSON object"))
        request = {}
    for field in ("agent", "action"):
        if not _is_object(request.get(field)):
            found.append((field, "an object"))
    agent = request.get("agent") if _is_object(request.get("agent")) else {}
    action = request.get("action") if _is_object(request.get("action")) else {}
    if "args" in action and not _is_object(action["args"]):
        found.append(("action.args", "an object when present"))
    if "context" in request and not _is_object(request["context"]):
        found.append(("context", "an object when present"))
    for field, value in (("agent.id", agent.get("id")), ("action.tool", action.get("tool"))):
        if not (isinstance(value, str) and _PRINTABLE_ASCII.fullmatch(value)):
            found.append((field, "a non-empty string of printable ASCII"))
    if "scopes" in agent and not _strings_array(agent["scopes"]):
        found.append(("agent.scopes", "an array of strings when present"))
    context = request.get("context") if _is_object(request.get("context")) else {}
    if "on_behalf_of" in context and not _strings_array(context["on_behalf_of"]):
        found.append(("context.on_behalf_of", "an array of agent ids when present"))
    if "approval_token" in context and not isinstance(context["approval_token"], str):
        found.append(("context.approval_token", "a string when present"))
    if "counters" in context:
        counters = context["counters"]
        if not _is_object(counters):
            found.append(("context.counters", "an object when present"))
        else:
            for subject, values in counters.items():
                if not _is_object(values):
                    found.append((f"context.counters.{subject}", "an object of counters"))
                    continue
                for name, used in values.items():
                    if not _exact_count(used):
                        found.append((f"context.counters.{subject}.{name}", "a whole number from 0 to 2^53"))
    return found


def _json_violations(value: Any, path: str = "input", depth: int = 0) -> list[Violation]:
    """What JSON cannot carry to an engine: lone surrogates, NaN and infinities, keys
    that are not strings, and nesting deeper than MAX_DEPTH."""
    if depth > MAX_DEPTH:
        return [(path, f"nested at most {MAX_DEPTH} levels deep")]
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return [(path, "valid Unicode text (it holds a lone surrogate)")]
        return []
    if isinstance(value, float) and not math.isfinite(value):
        return [(path, "a finite number")]
    if isinstance(value, dict):
        found = []
        for key, member in value.items():
            if not isinstance(key, str):
                found.append((path, "an object with string keys"))
                continue
            found.extend(_json_violations(key, f"{path}.(key)", depth + 1))
            found.extend(_json_violations(member, f"{path}.{key}", depth + 1))
        return found
    if isinstance(value, (list, tuple)):
        found = []
        for index, member in enumerate(value):
            found.extend(_json_violations(member, f"{path}[{index}]", depth + 1))
        return found
    if value is None or isinstance(value, (bool, int, float)):
        return []
    return [(path, f"a JSON value (not a {type(value).__name__})")]


def malformed_input_decision(violations: list[Violation]) -> dict:
    """The deny the pack gives for input outside the contract, with one reason per field."""
    fields = {}
    for field, expectation in violations:
        fields.setdefault(field, expectation)
    reasons = [
        {
            "rule": "malformed-input",
            "message": f"Input field {field if field.startswith('input') else 'input.' + field} must be {expectation}",
            "controls": list(_CONTROLS),
        }
        for field, expectation in sorted(fields.items())
    ]
    return {"allow": False, "effect": "deny", "reasons": reasons, "obligations": {"log": True, "mask": []}}
