"""The form of a signed record: its fields, the payload of each kind, and what the audit
store can hold. One set of rules for the signer, the offline verifier and the control
plane's API (docs/signed-records.md)."""

from __future__ import annotations

import base64
import binascii
import math
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from agents_sdk.errors import RecordFormatError

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first record of every session."""

RECORD_FIELDS = frozenset(
    {"record_id", "agent", "key_id", "session_id", "seq", "kind", "time", "payload", "prev_hash", "signature"}
)
"""A record has exactly these fields."""

DECISION_EFFECTS = ("allow", "deny", "require_approval")

# For each kind, the payload fields that must be present and a check of their value.
KIND_REQUIRED_FIELDS: dict[str, dict[str, Callable[[Any], bool]]] = {
    "intent": {
        "tool": lambda v: isinstance(v, str) and bool(v),
        "args": lambda v: isinstance(v, dict),
    },
    "decision": {
        "effect": lambda v: v in DECISION_EFFECTS,
        "reasons": lambda v: isinstance(v, list),
    },
    "result": {"summary": lambda v: isinstance(v, str)},
    # Human approval of a held call (agents_sdk.approvals): requested, approved, denied,
    # expired, consumed (the grant was used, once), refused (a grant that did not bind).
    "approval": {
        "event": lambda v: v in ("requested", "approved", "denied", "expired", "consumed", "refused"),
        "request_id": lambda v: isinstance(v, str),
    },
    "output": {"output": lambda v: True},
}
RECORD_KINDS = tuple(KIND_REQUIRED_FIELDS)

MAX_SESSION_ID_LENGTH = 200
MAX_NAME_LENGTH = 200
"""``agent`` and ``record_id`` are at most this many characters."""
MAX_PAYLOAD_DEPTH = 64
"""Objects and arrays nest at most this deep inside a payload."""
MAX_STRING_LENGTH = 1024 * 1024
"""A string (or object key) in a payload is at most this many characters."""
MAX_PAYLOAD_CHARACTERS = 4 * 1024 * 1024
"""All the strings and keys of one payload hold at most this many characters together."""

HEX64 = re.compile(r"^[0-9a-f]{64}$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$")


def payload_problem(kind: str, payload: Any) -> str | None:
    """Return why ``payload`` is not a valid payload for ``kind``, or None if it is."""
    # The three kinds of every governed call, checked inline when plainly valid (each call
    # signs all three); anything else gets the general check and its message.
    if type(payload) is dict:
        if kind == "intent":
            tool = payload.get("tool")
            if type(tool) is str and tool and type(payload.get("args")) is dict:
                return None
        elif kind == "decision":
            if payload.get("effect") in DECISION_EFFECTS and type(payload.get("reasons")) is list:
                return None
        elif kind == "result" and type(payload.get("summary")) is str:
            return None
    required = KIND_REQUIRED_FIELDS.get(kind)
    if required is None:
        return f"kind {kind!r} is not one of {', '.join(RECORD_KINDS)}"
    if not (type(payload) is dict or isinstance(payload, Mapping)):
        return "payload is not an object"
    for name, check in required.items():
        if name not in payload:
            return f"{kind} payload needs {name!r}"
        if not check(payload[name]):
            if name == "effect":
                return f"decision effect {payload[name]!r} is not one of {', '.join(DECISION_EFFECTS)}"
            return f"{kind} payload field {name!r} has the wrong type ({type(payload[name]).__name__})"
    return None


def record_form_problem(record: Any, *, canonical_uuid: bool = False) -> str | None:
    """Return why ``record`` does not have the form docs/signed-records.md requires, or None.

    The one set of rules the signer, the offline verifier and the control plane's API all
    apply: exactly the ten fields; ids and names non-empty, bounded and printable; hashes
    64 lowercase hex digits; an RFC 3339 time; a payload of its kind that nests at most
    ``MAX_PAYLOAD_DEPTH`` deep and holds no U+0000, unpaired surrogate or non-finite number.
    ``canonical_uuid`` also requires ``record_id`` to be a UUID in lowercase canonical text
    (the control plane's store keys on it).
    """
    if isinstance(record, RecordFormatError):
        return str(record)
    if not isinstance(record, Mapping):
        return f"a record must be a JSON object, not {type(record).__name__}"
    keys = set(record)
    missing = RECORD_FIELDS - keys
    if missing:
        return f"missing field(s): {', '.join(sorted(missing))}"
    extra = keys - RECORD_FIELDS
    if extra:
        return f"unexpected field(s): {', '.join(sorted(str(k) for k in extra))}"
    record_id = record["record_id"]
    if canonical_uuid and not (isinstance(record_id, str) and _is_canonical_uuid(record_id)):
        return "record_id must be a UUID such as 0b7f…-…, in lowercase"
    for name, limit in (("record_id", MAX_NAME_LENGTH), ("agent", MAX_NAME_LENGTH),
                        ("session_id", MAX_SESSION_ID_LENGTH)):
        problem = text_problem(record[name], name, max_length=limit)
        if problem:
            return problem
    for name in ("key_id", "prev_hash"):
        if not isinstance(record[name], str) or not HEX64.fullmatch(record[name]):
            return f"{name} must be 64 lowercase hex digits"
    seq = record["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or seq >= 2**63:
        return "seq must be a non-negative integer below 2**63"
    if not isinstance(record["time"], str) or not RFC3339.fullmatch(record["time"]) or parse_time(record["time"]) is None:
        return "time must be an RFC 3339 timestamp such as 2025-01-31T12:00:00.000000Z"
    if not isinstance(record["kind"], str):
        return "kind must be a string"
    problem = payload_problem(record["kind"], record["payload"]) or value_problem(record["payload"], "payload")
    if problem:
        return problem
    signature = record["signature"]
    try:
        decoded = base64.b64decode(signature, validate=True) if isinstance(signature, str) else b""
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != 64:
        return "signature must be the base64 of a 64-byte Ed25519 signature"
    return None


def text_problem(value: Any, name: str, *, max_length: int) -> str | None:
    """Why ``value`` is not a non-empty string of at most ``max_length`` characters that the
    audit store can hold (no U+0000, no unpaired surrogate), or None."""
    if not isinstance(value, str) or not value:
        return f"{name} must be a non-empty string"
    if len(value) > max_length:
        return f"{name} must be at most {max_length} characters, not {len(value)}"
    return _string_problem(value, name)


def value_problem(value: Any, where: str) -> str | None:
    """Why a JSON value cannot be stored as it is, or None.

    Refuses U+0000 (PostgreSQL's text and jsonb cannot hold it), unpaired surrogates (no
    UTF-8 form), NaN and infinities (no JSON form), strings over ``MAX_STRING_LENGTH``,
    nesting deeper than ``MAX_PAYLOAD_DEPTH`` and more than ``MAX_PAYLOAD_CHARACTERS`` of
    text in all. Iterative, so a hostile depth costs no recursion.
    """
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    total = 0
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            problem = _string_problem(item, path)
            if problem:
                return problem
            total += len(item)
        elif isinstance(item, Mapping) or isinstance(item, (list, tuple)):
            if depth >= MAX_PAYLOAD_DEPTH:
                return f"{path}: nests deeper than {MAX_PAYLOAD_DEPTH} levels; flatten the value"
            if isinstance(item, Mapping):
                for key, child in item.items():
                    if isinstance(key, str):
                        problem = _string_problem(key, f"{path} (a key)")
                        if problem:
                            return problem
                        total += len(key)
                    stack.append((child, f"{path}.{key}", depth + 1))
            else:
                stack.extend((child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{path}: {item!r} has no JSON form; use null or a string"
        if total > MAX_PAYLOAD_CHARACTERS:
            return f"{where}: holds more than {MAX_PAYLOAD_CHARACTERS} characters of text; send less"
    return None


def _string_problem(text: str, path: str) -> str | None:
    if len(text) > MAX_STRING_LENGTH:
        return f"{path}: a string of {len(text)} characters; at most {MAX_STRING_LENGTH}"
    if text.isascii():
        return f"{path}: contains U+0000, which the audit store cannot hold" if "\x00" in text else None
    if "\x00" in text:
        return f"{path}: contains U+0000, which the audit store cannot hold"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"{path}: contains an unpaired surrogate, which has no UTF-8 form"
    return None


def parse_time(text: str) -> datetime | None:
    """The timezone-aware moment of an RFC 3339 record time, or None."""
    try:
        moment = datetime.fromisoformat(text)
    except (ValueError, TypeError):
        return None
    return moment if moment.tzinfo is not None else None


def _is_canonical_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
