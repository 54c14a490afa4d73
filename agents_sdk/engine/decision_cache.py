"""A cache of `data.warden.decision` answers, per engine session, for repeated inputs.

An agent calls the same tools with the same arguments over and over; the answer can only
change with the input, the bundle's data, or the outside world. The cache is sound only
where the decision is a function of the key alone, so:

- it lives in one engine session (`regorus_backend.Session`: one thread, one policy): a new
  bundle is a new policy, and new data (`set_data`, `add_data`: a suspension, a revoked
  scope) empties it before the next decision, so the kill switch is never served stale;
- it holds only answers of the verified library on the compiled VM (`use_vm`): organisation
  modules may read anything, so their decisions are never cached;
- `decision_cache_sound` checks the library reads no clock or outside state except
  `time.now_ns()` for an approval grant's expiry, which is reached only through
  `context.approval_token`: inputs holding one are never cached;
- the key is the input's JSON text, which is exactly what the VM evaluates, except that an
  RFC 3339 `context.time` (as the Guard stamps every call) is replaced by one fixed time.
  The library reads `context.time` only as part of the context's JSON text, in the
  credential scans (sensitive_data.rego), and such a time cannot change them: it is made of
  digits, `-`, `:`, `T`, `.`, `Z` and `+`, quoted, so no secret pattern or base64 marker
  can match in or across it (each needs a letter it lacks, or a quote its classes lack),
  and its longest run of base64 characters (13) is shorter than a base64 run (20).
  `decision_cache_sound` refuses a library that names `time` anywhere else, and
  agents_sdk/tests/test_engine_decision_cache.py checks fresh answers against cached ones
  over the differential corpus with random times.

Set WARDEN_DECISION_CACHE=0 to turn it off (benches of the uncached path).
"""

from __future__ import annotations

import json
import json.encoder
import json.scanner
import os
import re
import threading
from typing import Any

__all__ = [
    "INPUT_ENCODER",
    "DecisionCache",
    "cache_enabled",
    "cache_key",
    "decision_cache_sound",
    "encode_input",
    "forget_encoding",
    "remember_encoding",
]

# RFC 3339 date-time (section 5.6), ASCII digits only; fullmatch, so no trailing newline.
_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-9]{2})")
# Any RFC 3339 time decides alike (module docstring): keys use this one.
KEY_TIME = "1970-01-01T00:00:00Z"
# Bounds: a key longer than this is not cached; past MAX_ENTRIES the oldest entry goes.
MAX_KEY_CHARS = 4096
MAX_ENTRIES = 1024

# One encoder for every key and for the VM's input text (json.dumps with options builds a
# new one per call): a key is then the VM's text with the time replaced, one encoding for both.
INPUT_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_DECODER = json.JSONDecoder()


def _no_default(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The C encoder and scanner that INPUT_ENCODER.encode and json.loads call, made once (encode
# builds an encoder on every call); no circular-reference marker: see encode_input.
_C_ENCODE: Any = None
_C_SCAN: Any = None
if json.encoder.c_make_encoder is not None and json.scanner.c_make_scanner is not None:
    _C_ENCODE = json.encoder.c_make_encoder(
        None, _no_default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    _C_SCAN = json.scanner.c_make_scanner(_DECODER)


class _KnownEncoding(threading.local):
    value: Any = None
    text: str | None = None


# This thread's input whose text the caller has already made with encode_input (the Guard
# validates an input by encoding it): the engine then takes that text instead of a second walk.
_known = _KnownEncoding()


def remember_encoding(value: Any, text: str) -> None:
    """Until ``forget_encoding``, ``encode_input(value)`` in this thread is ``text``: the caller
    made it with ``encode_input`` from the same, unchanged object."""
    _known.value, _known.text = value, text


def forget_encoding() -> None:
    _known.value = _known.text = None


def encode_input(value: Any) -> str:
    """``INPUT_ENCODER.encode(value)``, the same text and errors, without its per-call set-up."""
    known = _known
    if value is known.value and known.text is not None:
        return known.text
    if _C_ENCODE is None:
        return INPUT_ENCODER.encode(value)
    try:
        return "".join(_C_ENCODE(value, 0))
    except RecursionError:
        return INPUT_ENCODER.encode(value)  # deep, or a cycle: the checked encoder says which


def _decode(text: str) -> Any:
    if _C_SCAN is None:
        return _DECODER.decode(text)
    return _C_SCAN(text, 0)[0]  # text the cache wrote itself: one complete JSON value

# Builtins whose answer depends on something other than the input and data.
_OUTSIDE_WORLD = re.compile(
    r"\b(?:rand\.|uuid\.|http\.send|net\.|opa\.runtime|io\.jwt\.decode_verify|crypto\.x509\.parse_and_verify|trace\()"
)
_TIME_WORD = re.compile(r"\btime\b")
# The one use of the clock the library makes: an approval grant's expiry (approvals.rego),
# reached only for an input presenting context.approval_token.
_GRANT_EXPIRY = "not time.now_ns() < expires"


def cache_enabled() -> bool:
    return os.environ.get("WARDEN_DECISION_CACHE", "") not in ("0", "false", "no", "off")


def decision_cache_sound(modules: dict[str, str]) -> bool:
    """True when the decision of these (verified library) modules is a function of the
    input without `context.time` and `context.approval_token`, and the data: no module
    reads the outside world, and `time` appears only as the grant-expiry clock read."""
    for path, source in modules.items():
        if path.endswith("_test.rego"):
            continue
        if _OUTSIDE_WORLD.search(source):
            return False
        uses = len(_TIME_WORD.findall(source))
        if uses and (uses != source.count(_GRANT_EXPIRY) or not path.endswith("approvals.rego")):
            return False
    return True


def cache_key(input: Any, text: str | None = None) -> str | None:
    """The cache key of a decision input, or None when it must not be cached (not a plain
    JSON object, presents an approval token, or too large).

    ``text``, when given, is ``INPUT_ENCODER``'s encoding of ``input`` (the VM's input text):
    the key is then made from it, without encoding the input again.
    """
    if type(input) is not dict:
        return None
    context = input.get("context")
    moment = None
    if type(context) is dict:
        if "approval_token" in context:
            return None  # a grant's expiry reads the clock
        moment = context.get("time")
        if not (type(moment) is str and _RFC3339.fullmatch(moment)):
            moment = None
    key = None
    if text is not None:
        if moment is None:
            key = text
        else:
            # Inside a JSON string every quote is escaped, so this member text can only be an
            # object's "time" member; found once, it is the context's, and replacing it gives
            # exactly the encoding of the input with the key's time.
            member = '"time":"' + moment + '"'
            if text.count(member) == 1:
                key = text.replace(member, '"time":"' + KEY_TIME + '"')
    if key is None:
        if moment is not None:
            input = {**input, "context": {**context, "time": KEY_TIME}}  # type: ignore[dict-item]
        try:
            key = INPUT_ENCODER.encode(input)
            key.encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError, RecursionError):
            return None
    return key if len(key) <= MAX_KEY_CHARS else None


class DecisionCache:
    """Decision answers (compact JSON text) by cache key, oldest dropped first. One thread's."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries
        self._answers: dict[str, str] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Any:
        """A fresh copy of the cached decision for `key`, or None."""
        text = self._answers.get(key)
        if text is None:
            self.misses += 1
            return None
        self.hits += 1
        return _decode(text)

    def put(self, key: str, decision: Any) -> None:
        if len(self._answers) >= self.max_entries:
            del self._answers[next(iter(self._answers))]
        self._answers[key] = json.dumps(decision, separators=(",", ":"))

    def clear(self) -> None:
        self._answers.clear()

    def __len__(self) -> int:
        return len(self._answers)
