"""Canonical JSON (sorted keys, no spaces, UTF-8), the bytes a record's signature covers and
its chain hash.

The encoder does the checking: a value is encoded once by the C encoder, and the few things
it would let through (a non-string key it silently turns into one, a tuple, an unpaired
surrogate, U+0000, excessive depth or size) are caught on the encoded bytes or by comparing
their decoding with the value, all in C. Only a value that fails that comparison is walked
in Python, to name the offending location, so odd-but-valid values (tuples, subclasses)
cost a walk and ordinary ones never do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import json.encoder
import json.scanner
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from agents_sdk.errors import CanonicalJSONError, SigningError
from agents_sdk.records.form import MAX_PAYLOAD_DEPTH, MAX_STRING_LENGTH, value_problem

# Built once: json.dumps builds an encoder per call with these options.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_ENCODE = _ENCODER.encode
_DECODE = json.JSONDecoder().decode


def _no_default(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The C encoder and scanner that JSONEncoder.encode and JSONDecoder.decode call, made once
# (encode builds the encoder on every call): the same bytes, without the Python frames.
# No circular-reference marker: a cycle ends in RecursionError, which callers handle as before.
_C_ITERENCODE: Any = None
_C_SCAN: Any = None
if json.encoder.c_make_encoder is not None and json.scanner.c_make_scanner is not None:  # type: ignore[attr-defined]
    _C_ITERENCODE = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None, _no_default, json.encoder.encode_basestring, None, ":", ",", True, False, False
    )
    _C_SCAN = json.scanner.c_make_scanner(json.JSONDecoder())  # type: ignore[attr-defined]


def _encode_fast(value: Any) -> str:
    if _C_ITERENCODE is None:  # an interpreter without the C accelerators
        return _ENCODE(value)
    return "".join(_C_ITERENCODE(value, 0))


def _decode_fast(text: str) -> Any:
    if _C_SCAN is None:
        return _DECODE(text)
    value, end = _C_SCAN(text, 0)
    if end != len(text):
        raise ValueError("extra data after the JSON value")
    return value
_NUL = b"\\u0000"


def canonical_json(value: Any) -> bytes:
    """Return the canonical JSON encoding of ``value`` as UTF-8 bytes.

    Object keys sorted, no whitespace (separators ``,`` and ``:``), non-ASCII characters
    written as UTF-8 rather than ``\\u`` escapes. Only JSON values are accepted: dicts
    with string keys, lists or tuples, strings, integers, finite floats, booleans and
    None. Raises CanonicalJSONError naming the offending location otherwise (NaN,
    Infinity, a non-string key, bytes, a datetime, an unpaired surrogate ...).
    """
    try:
        encoded = _ENCODE(value).encode("utf-8")
        if _DECODE(encoded.decode("utf-8")) == value:
            return encoded
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        pass
    # Not plain JSON as parsed (a tuple, a non-string key, NaN, bytes ...): walk it to name the problem.
    _check_json_value(value, "$")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def signable_payload(payload: Any) -> tuple[bytes, Any]:
    """The canonical bytes of a payload the signer accepts and a fresh copy of it (decoded
    from those bytes, so it shares nothing with the caller's objects).

    Accepts exactly what ``canonical_json`` accepts and ``value_problem`` passes. Raises
    CanonicalJSONError for a value without one JSON form, SigningError for one the audit
    store cannot hold (U+0000, too deep, too long).
    """
    try:
        text = _encode_fast(payload)
        encoded = text.encode("utf-8")
        # Under these bounds no string, total or nesting limit can be exceeded; U+0000 is
        # escaped by the encoder, so its absence shows as the absence of its escape.
        if (len(encoded) <= MAX_STRING_LENGTH and _NUL not in encoded
                and encoded.count(b"[") + encoded.count(b"{") <= MAX_PAYLOAD_DEPTH):
            copy = _decode_fast(text)
            if copy == payload:
                return encoded, copy
    except (TypeError, ValueError, RecursionError):
        pass
    _check_json_value(payload, "payload")
    problem = value_problem(payload, "payload")
    if problem:
        raise SigningError(problem)
    encoded = canonical_json(payload)
    return encoded, _DECODE(encoded.decode("utf-8"))


def _check_json_value(value: Any, where: str) -> None:
    # bool is an int subclass and str/int/None are leaves: check leaves first, they are most common.
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CanonicalJSONError(f"{where}: string is not valid Unicode (unpaired surrogate)") from exc
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CanonicalJSONError(f"{where}: {value!r} has no JSON form; use null or a string")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalJSONError(f"{where}: object key {key!r} is a {type(key).__name__}, not a string")
            _check_json_value(key, f"{where}.{key}")
            _check_json_value(item, f"{where}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json_value(item, f"{where}[{index}]")
        return
    raise CanonicalJSONError(f"{where}: a {type(value).__name__} is not a JSON value; convert it first")


def json_string(text: str) -> bytes:
    """A string as canonical JSON (non-ASCII as UTF-8)."""
    return json.dumps(text, ensure_ascii=False).encode("utf-8")


def record_head(agent: str, key_id: str) -> bytes:
    """The first bytes of every record of ``agent`` signed with ``key_id`` (up to ``kind``'s value)."""
    return b'{"agent":' + json_string(agent) + b',"key_id":"' + key_id.encode("ascii") + b'","kind":"'


def seal(sign: Callable[[bytes], bytes], head: bytes, kind: str, payload_json: bytes, prev_hash: str,
         record_id: str, seq: int, session_json: bytes, time: str) -> tuple[bytes, str]:
    """Sign one record assembled from its parts; return its canonical bytes (signature
    included) and the signature (base64).

    ``head`` is ``record_head``'s, ``payload_json`` canonical, ``session_json`` ``json_string``'s.
    The same inputs give the same bytes: Ed25519 (RFC 8032) is deterministic, which is what
    lets a spool be signed again after a crash with byte-identical results.
    """
    # Sorted keys: agent, key_id, kind, payload, prev_hash, record_id, seq, session_id,
    # [signature], time. Every header value is ASCII or JSON-escaped already.
    body = b"".join((
        head, kind.encode("ascii"), b'","payload":', payload_json, b',"prev_hash":"',
        prev_hash.encode("ascii"), b'","record_id":"', record_id.encode("ascii"), b'","seq":',
        str(seq).encode("ascii"), b',"session_id":', session_json, b","
    ))
    tail = b'"time":"' + time.encode("ascii") + b'"}'
    signature = base64.b64encode(sign(body + tail))
    return b"".join((body, b'"signature":"', signature, b'",', tail)), signature.decode("ascii")


def record_hash(record: Mapping[str, Any]) -> str:
    """Return the hex SHA-256 of a record's canonical JSON, signature included.

    This is the ``prev_hash`` the next record of the same session must carry.
    Raises CanonicalJSONError if the record holds a non-JSON value.
    """
    return hashlib.sha256(canonical_json(record)).hexdigest()


def signing_bytes(record: Mapping[str, Any]) -> bytes:
    """Return the bytes a record's signature covers: its canonical JSON without ``signature``.

    Raises CanonicalJSONError if the record holds a non-JSON value.
    """
    return canonical_json({k: v for k, v in record.items() if k != "signature"})


_this_second: tuple[int, str] = (-1, "")


def utc_timestamp(moment: datetime | None = None) -> str:
    """Return ``moment`` (default now) as RFC 3339 UTC with microseconds: ``2025-01-31T12:00:00.000000Z``."""
    if moment is None:
        global _this_second
        # As datetime.now(UTC) reads the clock (microseconds, rounded down), with the date and
        # time of day formatted once per second: this runs on every governed call.
        seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
        second = _this_second
        if second[0] != seconds:
            second = _this_second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
        return f"{second[1]}.{micros:06d}Z"
    if moment.tzinfo is None:
        raise SigningError("record times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
