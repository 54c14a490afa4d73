"""The sidecar's answers as bytes: Data API answers built from the result's one encoding,
Rego sets written as OPA writes them, answers to repeated requests, decision ids, and the
decision-log counters as Prometheus text."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from agents_sdk.engine.decision_cache import cache_enabled, decision_cache_sound
from agents_sdk.pointers import masked
from agents_sdk.sidecar.uploads import timestamp


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


class Repeat:
    """A decision answer kept for its request's body: the result, its encoding and the
    decision log's ``input`` member (masked as the policy asked)."""

    __slots__ = ("logged_input", "result", "result_json")

    def __init__(self, result: Any, result_json: str, logged_input: str):
        self.result = result
        self.result_json = result_json
        self.logged_input = logged_input


class RepeatAnswers:
    """Answers to Warden decision requests whose body was already decided with the active
    bundle's data: an agent sends the same bytes for the same tool call over and over.

    Sound only where the decision is a function of the body and the bundle: the engine's own
    test (``decision_cache_sound``: no module reads the clock, randomness or the outside
    world, but for an approval grant's expiry) must pass for every module of the bundle, and
    WARDEN_DECISION_CACHE must not turn caches off. The key is the exact body, so nothing is
    assumed about which fields a policy reads. The sidecar keeps no answer to an input that
    presents a delegation chain or an approval grant (both are checked against the clock),
    nor a refusal, error or stale-bundle deny; the bundle's age is checked on every request,
    repeat or not. The table empties whenever the backend's data object changes (every
    bundle or data activation: a suspension is never answered from it). One thread's (the
    event loop's); at most ``max_entries`` bodies of at most ``max_body`` bytes.
    """

    def __init__(self, max_entries: int = 1024, max_body: int = 4096):
        self.max_entries = max_entries
        self.max_body = max_body
        self.hits = 0
        self._answers: dict[bytes, Repeat] = {}
        self._data: Any = self  # the bundle data and policy the answers were decided with (self: none yet)
        self._policy: Any = self
        self._sound = False

    def admits(self, body: bytes, backend: Any) -> bool:
        """True if an answer to ``body`` may be kept or served with ``backend``'s bundle."""
        data, policy = backend.data, backend.policy
        if data is not self._data or policy is not self._policy:
            self._answers.clear()
            self._data, self._policy = data, policy
            self._sound = policy is not None and cache_enabled() and decision_cache_sound(policy.modules)
        return self._sound and len(body) <= self.max_body

    def get(self, body: bytes) -> Repeat | None:
        repeat = self._answers.get(body)
        if repeat is not None:
            self.hits += 1
        return repeat

    def put(self, body: bytes, repeat: Repeat) -> None:
        if len(self._answers) >= self.max_entries:
            del self._answers[next(iter(self._answers))]  # the oldest
        self._answers[body] = repeat

    def __len__(self) -> int:
        return len(self._answers)


class LogEvents:
    """Decision-log events in OPA's format, as the bytes ``json.dumps(event,
    separators=(",", ":"))`` gives, built from fragments: the labels, path and bundle
    revision are encoded once, the input (``input_member``) and result are given encoded."""

    def __init__(self, labels: dict[str, Any], bundle_name: str, revision: Callable[[], str | None]):
        self._head = '{"labels":' + ENCODE(labels) + ',"decision_id":"'
        self._bundle_name = bundle_name
        self._revision = revision
        self._bundles = ("", "")  # (revision, its "bundles" member)
        self._callers: dict[tuple[str, str], str] = {}  # (path, requested_by) -> their members, encoded

    @staticmethod
    def input_member(input_value: Any, result: Any) -> str:
        """The event's ``input`` member, masked as the policy asks (with ``erased``). Raises
        TypeError or ValueError if the input has no JSON form."""
        pointers = (result.get("obligations") or {}).get("mask") if isinstance(result, dict) else None
        if pointers:
            # The policy asks that these input values never reach the audit log.
            erased = [f"/input{p}" for p in as_json(pointers)]
            shown = masked({"input": input_value}, erased, "**REDACTED**")["input"]
            return ',"input":' + ENCODE(shown) + ',"erased":' + ENCODE(erased)
        return ',"input":' + ENCODE(input_value)

    def event(self, decision_id: str, path: str, logged_input: str, result_json: str | None,
              error: dict[str, Any] | None, elapsed_ns: int, requested_by: str) -> bytes:
        members = self._callers.get((path, requested_by))
        if members is None:
            # A connection asks again and again: its path and address are encoded once.
            if len(self._callers) >= _MAX_CALLERS:
                self._callers.clear()
            members = '","path":' + string(path) + ',"requested_by":' + string(requested_by) + ',"timestamp":"'
            self._callers[(path, requested_by)] = members
        parts = [self._head, decision_id, members, timestamp(), '","metrics":{"timer_rego_query_eval_ns":',
                 str(elapsed_ns), "}"]
        revision = self._revision()
        if revision:
            if revision != self._bundles[0]:
                self._bundles = (revision, ',"bundles":' + ENCODE({self._bundle_name: {"revision": revision}}))
            parts.append(self._bundles[1])
        parts.append(logged_input)
        if result_json is not None:
            parts += [',"result":', result_json]
        if error is not None:
            parts += [',"error":', ENCODE(error)]
        parts.append("}")
        return "".join(parts).encode("ascii")


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


# Encoded (path, requested_by) members kept by LogEvents: a few per open connection.
_MAX_CALLERS = 4096
# RFC 4122 variant bits (10xx) over the random nibble.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
# One compact ASCII encoder for answers and log events; the result's also writes Rego sets.
ENCODE = json.JSONEncoder(separators=(",", ":")).encode
string = json.encoder.encode_basestring_ascii


def encode(answer: Any) -> bytes:
    return ENCODE(answer).encode("ascii")


# (name, Prometheus type, help) of the decision-log counters served at /metrics.
_LOG_METRICS = (
    ("dropped_total", "counter", "Decision-log events dropped: a full queue, no JSON form, too large, "
                                 "or held by an uploader that died."),
    ("uploaded_total", "counter", "Decision-log events the control plane accepted."),
    ("pending", "gauge", "Decision-log events queued and not yet uploaded."),
)


def log_metrics_text(counters: dict[str, int] | None) -> str:
    """The decision-log ``counters`` (uploaded, dropped, pending) in Prometheus's text
    format; empty without decision logs."""
    if counters is None:
        return ""
    lines = []
    for name, kind, help_text in _LOG_METRICS:
        lines += [f"# HELP warden_decision_logs_{name} {help_text}", f"# TYPE warden_decision_logs_{name} {kind}",
                  f"warden_decision_logs_{name} {counters[name.removesuffix('_total')]}"]
    return "\n".join(lines) + "\n"


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
