"""The sidecar's answers as bytes: Data API answers built from the result's one encoding,
Rego sets written as OPA writes them, and decision ids."""

from __future__ import annotations

import json
import os
from typing import Any


class Decided:
    """A decision made by ``Sidecar._decide``: its answer is built from ``result_json``."""

    __slots__ = ("decision_id", "elapsed_ns", "error", "metrics", "result", "result_json")

    def __init__(self, decision_id: str, result: Any, result_json: str | None, error: dict[str, Any] | None,
                 elapsed_ns: int, metrics: bool):
        self.decision_id = decision_id
        self.result = result
        self.result_json = result_json
        self.error = error
        self.elapsed_ns = elapsed_ns
        self.metrics = metrics

    def encoded(self) -> tuple[int, bytes]:
        """Status and body, the bytes ``json.dumps`` gives for ``{"decision_id", "result", "metrics"}``."""
        if self.error is not None:
            return 500, encode({**self.error, "decision_id": self.decision_id})
        parts = ['{"decision_id":"', self.decision_id, '"']
        if self.result_json is not None:
            parts += [',"result":', self.result_json]
        if self.metrics:
            parts += [',"metrics":{"timer_rego_query_eval_ns":', str(self.elapsed_ns), "}"]
        parts.append("}")
        return 200, "".join(parts).encode("ascii")


class DecisionIds:
    """Version-4 UUIDs as ``str(uuid.uuid4())`` writes them, from random bytes read 4 KiB at a
    time (one getrandom call per 256 decisions instead of one per decision). One thread's."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def next(self) -> str:
        at = self._at
        if at >= len(self._pool):
            self._pool, at = os.urandom(4096), 0
        self._at = at + 16
        h = self._pool[at:at + 16].hex()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


# RFC 4122 variant bits (10xx) over the random nibble.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
# One compact ASCII encoder for answers and log events; the result's also writes Rego sets.
ENCODE = json.JSONEncoder(separators=(",", ":")).encode
string = json.encoder.encode_basestring_ascii


def encode(answer: Any) -> bytes:
    return ENCODE(answer).encode("ascii")


def _set_as_array(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return as_json(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


encode_result = json.JSONEncoder(separators=(",", ":"), default=_set_as_array).encode


def as_json(value: Any) -> Any:
    """A policy result as plain JSON: Rego sets (Python sets from the engine) become arrays,
    as OPA writes them: in Rego's order (null, booleans, numbers, strings, then composites)."""
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((as_json(item) for item in value), key=_rego_order)
    return value


def _rego_order(value: Any) -> tuple[int, Any]:
    # Python sets from the engine hold scalars only (sets of objects or arrays come as JSON
    # arrays already in the engine's order); code-point order is Go's byte order for UTF-8.
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, int | float):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, json.dumps(value, sort_keys=True))
