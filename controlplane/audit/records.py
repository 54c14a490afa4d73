"""Signed action records as the audit pipeline reads them: strict parsing of a batch body,
the form of one record, masking of sensitive values, and sealing of the original.

The format is docs/signed-records.md; canonical JSON, hashing and the payload rules come
from `agents_sdk.records` so the control plane and the offline verifier cannot disagree.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
import zlib
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet

from agents_sdk.records import RECORD_FIELDS, canonical_json, payload_problem
from controlplane.audit import conf
from controlplane.core.crypto import secrets_at_rest
from controlplane.core.exceptions import InvalidInput

MASK = "[masked]"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$")
MAX_SESSION_ID_LENGTH = 200


class BatchTooLarge(Exception):
    """The batch exceeds the records or bytes a batch may hold (413)."""


class DuplicateKey(ValueError):
    pass


# -- the batch body ---------------------------------------------------------------------


def inflate(body: bytes, encoding: str, *, limit: int) -> bytes:
    """The body without its Content-Encoding (identity or gzip), refusing more than `limit` bytes."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise InvalidInput(f"Content-Encoding {encoding!r} is not supported; use gzip or none", field="content_encoding")
    inflater = zlib.decompressobj(wbits=31)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"the body is not valid gzip: {exc}", field="content_encoding") from exc
    if len(data) > limit or inflater.unconsumed_tail:
        raise BatchTooLarge(f"the inflated body exceeds {limit} bytes")
    if not inflater.eof:
        raise InvalidInput("the gzip body is truncated", field="content_encoding")
    return data


def parse_batch(data: bytes, *, max_records: int | None = None) -> list[Any]:
    """The records of a batch body `{"records": [...]}`, parsed strictly.

    Objects with duplicate keys and NaN/Infinity are refused (docs/signed-records.md: two
    parsers must not see different records behind one signature). Raises InvalidInput
    naming what is wrong, BatchTooLarge for too many records.
    """
    max_records = conf.max_batch_records() if max_records is None else max_records
    try:
        value = json.loads(data, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except DuplicateKey as exc:
        raise InvalidInput(f"not valid JSON: {exc}", field="records") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"not valid JSON: {exc}", field="records") from exc
    if not isinstance(value, dict) or not isinstance(value.get("records"), list):
        raise InvalidInput('the body must be a JSON object {"records": [...]}', field="records")
    records = value["records"]
    if not records:
        raise InvalidInput("a batch holds at least one record", field="records")
    if len(records) > max_records:
        raise BatchTooLarge(f"a batch holds at most {max_records} records, this one has {len(records)}")
    return records


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(f"duplicate key {key!r} in an object")
            seen.add(key)
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# -- canonical encoding -----------------------------------------------------------------

# The encoder `agents_sdk.records.canonical_json` uses, built once (json.dumps builds one per call).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_bytes(value: Any) -> bytes:
    """`agents_sdk.records.canonical_json(value)` for a value parsed by `json.loads`, faster.

    A parsed value holds only JSON types (string keys, no tuples or bytes), so the only
    values without a canonical form are the ones `json.dumps` refuses too: ±Infinity
    (`1e999` parses as inf) and unpaired surrogates (UnicodeEncodeError). For those the
    SDK's function is called, which raises CanonicalJSONError naming where.
    """
    try:
        return _CANONICAL.encode(value).encode("utf-8")
    except ValueError:
        return canonical_json(value)


# JSON columns are written as text for PostgreSQL to parse (jsonb keeps no key order or spacing).
json_text = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def signed_encodings(record: dict[str, Any]) -> tuple[bytes, bytes]:
    """(the bytes the signature covers, the whole record's canonical JSON) from ONE encoding.

    For a record of the right form (`form_problem` is None): its keys are exactly the ten
    fields, so in canonical order the whole record ends `,"signature":"…","time":"…"}`
    and the signed bytes are the same text without the signature member. Both values are
    ASCII without escapes (base64, RFC 3339), so the text of that end is known exactly;
    should it ever not match, both are encoded the slow way. Raises ValueError
    (CanonicalJSONError) for a value with no canonical form.
    """
    whole = canonical_bytes(record)
    time_member = f'"time":"{record["time"]}"}}'.encode()
    tail = f',"signature":"{record["signature"]}",'.encode() + time_member
    if whole.endswith(tail):
        return whole[: -len(tail)] + b"," + time_member, whole
    return canonical_bytes({k: v for k, v in record.items() if k != "signature"}), whole


# -- one record -------------------------------------------------------------------------


def form_problem(record: Any) -> str | None:
    """Why `record` does not have the form docs/signed-records.md requires, or None.

    Stricter than the offline verifier where the store needs it: `record_id` must be a
    UUID in its canonical text form.
    """
    if not isinstance(record, dict):
        return f"a record must be a JSON object, not {type(record).__name__}"
    keys = record.keys()
    if keys != RECORD_FIELDS:
        missing = RECORD_FIELDS - keys
        if missing:
            return f"missing field(s): {', '.join(sorted(missing))}"
        return f"unexpected field(s): {', '.join(sorted(str(k) for k in keys - RECORD_FIELDS))}"
    record_id = record["record_id"]
    if not isinstance(record_id, str) or not _is_uuid(record_id):
        return "record_id must be a UUID such as 0b7f…-…, in lowercase"
    for name in ("agent", "session_id"):
        if not isinstance(record[name], str) or not record[name]:
            return f"{name} must be a non-empty string"
    if len(record["session_id"]) > MAX_SESSION_ID_LENGTH:
        return f"session_id must be at most {MAX_SESSION_ID_LENGTH} characters"
    for name in ("key_id", "prev_hash"):
        if not isinstance(record[name], str) or not _HEX64.fullmatch(record[name]):
            return f"{name} must be 64 lowercase hex digits"
    seq = record["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or seq >= 2**63:
        return "seq must be a non-negative integer"
    if not isinstance(record["time"], str) or not _RFC3339.fullmatch(record["time"]) or record_time(record) is None:
        return "time must be an RFC 3339 timestamp such as 2025-01-31T12:00:00.000000Z"
    if not isinstance(record["kind"], str):
        return "kind must be a string"
    problem = payload_problem(record["kind"], record["payload"])
    if problem:
        return problem
    if contains_nul(record["payload"]):
        # PostgreSQL's jsonb cannot hold U+0000; refused here, the record is quarantined
        # instead of failing its whole batch at insert time.
        return "payload contains the character U+0000, which the audit store cannot hold"
    signature = record["signature"]
    try:
        decoded = base64.b64decode(signature, validate=True) if isinstance(signature, str) else b""
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != 64:
        return "signature must be the base64 of a 64-byte Ed25519 signature"
    return None


def contains_nul(value: Any) -> bool:
    """Whether any string or key in `value` holds U+0000."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or contains_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(contains_nul(item) for item in value)
    return False


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def record_time(record: dict[str, Any]) -> datetime | None:
    try:
        moment = datetime.fromisoformat(record["time"])
    except (ValueError, TypeError):
        return None
    return moment if moment.tzinfo is not None else None


def rule_ids(record: dict[str, Any]) -> list[str]:
    """The rule names of a decision's reasons, in order, without repeats."""
    if record["kind"] != "decision":
        return []
    rules: list[str] = []
    for reason in record["payload"].get("reasons", []):
        rule = reason.get("rule") if isinstance(reason, dict) else None
        if isinstance(rule, str) and rule not in rules:
            rules.append(rule)
    return rules


def mask_pointers(record: dict[str, Any]) -> list[str]:
    """The `mask` obligation a decision record carries (`obligations.mask`, JSON pointers)."""
    obligations = record["payload"].get("obligations")
    pointers = obligations.get("mask") if isinstance(obligations, dict) else None
    if not isinstance(pointers, list):
        return []
    return [p for p in pointers if isinstance(p, str) and p.startswith("/")]


# -- masking ----------------------------------------------------------------------------


def mask_payload(payload: Any, pointers: list[str], sensitive: frozenset[str]) -> tuple[Any, list[str]]:
    """`payload` with sensitive values replaced, and the JSON pointers replaced.

    `pointers` are the decision's mask paths. They address the decision input, so
    `/action/args/x` also matches the payload's `/args/x` (an intent's payload is the
    input's action). Any object key in `sensitive` is masked wherever it appears.

    `payload` is never changed: copy on write, only the objects and arrays on the path to
    a masked value are copied, the rest is shared (the same object when nothing is masked).
    """
    masked: list[str] = []
    result = payload
    for pointer in pointers:
        candidates = [pointer]
        if pointer.startswith("/action/"):
            candidates.append(pointer[len("/action"):])
        for candidate in candidates:
            parts = [_unescape(p) for p in candidate.split("/")[1:]]
            if parts:
                result, hit = _mask_pointer(result, parts, 0)
                if hit:
                    masked.append(candidate)
    result = _mask_keys(result, sensitive, "", masked)
    return result, sorted(set(masked))


def _mask_keys(value: Any, sensitive: frozenset[str], where: str, masked: list[str]) -> Any:
    """`value` with every value under a sensitive key replaced (a copy only if one is); the
    paths of those keys are appended to `masked`, even where the value was masked already."""
    if isinstance(value, dict):
        copied = None
        for key, item in value.items():
            if key.lower() in sensitive:
                masked.append(f"{where}/{_escape(key)}")
                if item != MASK:
                    if copied is None:
                        copied = dict(value)
                    copied[key] = MASK
            elif isinstance(item, (dict, list)):
                new = _mask_keys(item, sensitive, f"{where}/{_escape(key)}", masked)
                if new is not item:
                    if copied is None:
                        copied = dict(value)
                    copied[key] = new
        return value if copied is None else copied
    if isinstance(value, list):
        copied = None
        for index, item in enumerate(value):
            if isinstance(item, (dict, list)):
                new = _mask_keys(item, sensitive, f"{where}/{index}", masked)
                if new is not item:
                    if copied is None:
                        copied = list(value)
                    copied[index] = new
        return value if copied is None else copied
    return value


def _mask_pointer(node: Any, parts: list[str], depth: int) -> tuple[Any, bool]:
    """(`node` with the value at `parts[depth:]` masked, whether that value exists); copy on write."""
    part = parts[depth]
    if isinstance(node, dict):
        if part not in node:
            return node, False
        index = part
    elif isinstance(node, list) and part.isascii() and part.isdigit() and int(part) < len(node):
        index = int(part)
    else:
        return node, False
    if depth == len(parts) - 1:
        child, hit = MASK, True
    else:
        child = node[index]
        if child is None:
            return node, False
        child, hit = _mask_pointer(child, parts, depth + 1)
        if not hit:
            return node, False
    copied = dict(node) if isinstance(node, dict) else list(node)
    copied[index] = child
    return copied, True


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def mask_raw(value: Any) -> Any:
    """A quarantined record for display: sensitive keys masked wherever they appear."""
    return _mask_keys(value, conf.sensitive_keys(), "", [])


# -- sealing ----------------------------------------------------------------------------


def sealer() -> Fernet:
    """The Fernet key that seals original records (the control plane's key for secrets at rest)."""
    return secrets_at_rest()


def unseal(token: bytes, fernet: Fernet | None = None) -> bytes:
    """The original bytes of a sealed record; raises cryptography.fernet.InvalidToken if altered."""
    return (fernet or sealer()).decrypt(bytes(token))
