"""Signed action records as the audit pipeline reads them: strict parsing of a batch body,
the form of one record, masking of sensitive values, and sealing of the original.

The format is docs/signed-records.md; canonical JSON, hashing and the payload rules come
from `agents_sdk.records` so the control plane and the offline verifier cannot disagree.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet

from agents_sdk.errors import RecordFormatError
from agents_sdk.records import canonical_json, loads_strict, parse_time, record_form_problem
from controlplane.audit import conf
from controlplane.core.crypto import secrets_at_rest
from controlplane.core.exceptions import InvalidInput

MASK = "[masked]"



class BatchTooLarge(Exception):
    """The batch exceeds the records or bytes a batch may hold (413)."""


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
        value = loads_strict(data)
    except RecordFormatError as exc:
        raise InvalidInput(str(exc), field="records") from exc
    if not isinstance(value, dict) or not isinstance(value.get("records"), list):
        raise InvalidInput('the body must be a JSON object {"records": [...]}', field="records")
    records = value["records"]
    if not records:
        raise InvalidInput("a batch holds at least one record", field="records")
    if len(records) > max_records:
        raise BatchTooLarge(f"a batch holds at most {max_records} records, this one has {len(records)}")
    return records


# The first line of a stored body the API checked (strict parse, every record's form) before
# its 202: the worker then parses it once with the C scanner and trusts each record's form.
# Bump the number when the form rules change, so bodies checked by older rules are checked again.
FORM_CHECKED = b"warden-batch form-checked 1\n"
# The same mark before the body as the agent sent it, gzip-compressed, when its inflated form
# passed those checks: about a third of the bytes to seal, store (no TOAST compression attempt
# pays off on sealed bytes) and read back, for one inflation by the worker.
FORM_CHECKED_GZIP = b"warden-batch form-checked gzip 1\n"


def seal_checked_batch(data: bytes, fernet: Fernet | None = None, *, gzipped: bytes | None = None) -> bytes:
    """A batch body whose records passed `parse_batch` and `batch_problems`, sealed with that
    fact: Fernet authenticates it, so only this control plane can have written the mark.
    `gzipped`: the body as received, whose `inflate` is `data`; it is sealed instead."""
    if gzipped is not None:
        return seal(FORM_CHECKED_GZIP + gzipped, fernet)
    return seal(FORM_CHECKED + data, fernet)


def unseal_batch(token: bytes, fernet: Fernet | None = None) -> tuple[list[Any], bool]:
    """(the records of a stored batch body, whether the API checked their form already).

    A body without the mark (stored before it, or by older form rules) is parsed strictly,
    and its records must each be checked by the caller.
    """
    data = unseal(token, fernet)
    if data.startswith(FORM_CHECKED_GZIP):
        # Inflated as the API inflated it before its checks (the same function, so the same
        # bytes); the size it reached then was within the limit, whatever the limit is now.
        return json.loads(inflate(data[len(FORM_CHECKED_GZIP):], "gzip", limit=2**40))["records"], True
    if data.startswith(FORM_CHECKED):
        return json.loads(data[len(FORM_CHECKED):])["records"], True
    return parse_batch(data, max_records=2**31), False


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
_json_text = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def json_text(value: Any) -> str:
    """`value` as compact JSON text; most events' `rule_ids` and `masked_paths` are empty lists,
    written without building an encoder for them."""
    return "[]" if value == [] else _json_text(value)


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


_PAYLOAD_KEY = b',"payload":'
_PREV_HASH_KEY = b',"prev_hash":"'


def payload_json(whole: bytes) -> bytes:
    """The canonical JSON of a record's payload, cut from the whole record's canonical JSON
    (`signed_encodings`) instead of encoding the payload again.

    For a record of the right form the top-level keys are the ten fields, sorted: agent,
    key_id, kind, payload, prev_hash, … In canonical JSON every `"` inside a string is
    escaped, so `,"` never occurs in a string: the first `,"payload":` is the top-level key
    (only strings precede it), and the last `,"prev_hash":"` is the top-level member that
    follows the payload (only strings and an integer follow it).
    """
    return whole[whole.index(_PAYLOAD_KEY) + len(_PAYLOAD_KEY): whole.rindex(_PREV_HASH_KEY)]


# -- one record -------------------------------------------------------------------------


def form_problem(record: Any) -> str | None:
    """Why `record` does not have the form docs/signed-records.md requires, or None: the SDK's
    rules (`agents_sdk.records.record_form_problem`), with `record_id` a canonical UUID
    because the store keys on it."""
    return record_form_problem(record, canonical_uuid=True)


def batch_problems(items: list[Any], *, limit: int = 20) -> list[str]:
    """The records of a batch that do not have the required form, as "records[i]: why".

    Checked before the 202: a record the store cannot hold (U+0000, an unpaired surrogate,
    a payload nested too deep, an oversized field) must never reach the worker.
    """
    problems = []
    for position, record in enumerate(items):
        problem = record_form_problem(record, canonical_uuid=True)
        if problem:
            problems.append(f"records[{position}]: {problem}")
            if len(problems) >= limit:
                break
    return problems


def contains_nul(value: Any) -> bool:
    """Whether any string or key in `value` holds U+0000."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or contains_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(contains_nul(item) for item in value)
    return False


def record_time(record: dict[str, Any]) -> datetime | None:
    return parse_time(record["time"])


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


def sensitive_key_test(sensitive: frozenset[str]) -> Callable[[bytes], bool]:
    """A test of a record's canonical JSON: False only when no object key in it can be one of
    `sensitive` (lowercase), so masking by key would find nothing and may skip its walk.

    Canonical JSON writes a key as `"key":` with only `"`, `\\` and control characters
    escaped, and a key matches when `key.lower()` is a sensitive name: that name then appears
    in the lowercased text. For a name that is not plain printable ASCII the test always
    answers True (the walk decides).
    """
    if not all(name.isascii() and name.isprintable() and '"' not in name and "\\" not in name for name in sensitive):
        return lambda whole: True
    if not sensitive:
        return lambda whole: False
    search = re.compile(b"|".join(re.escape(f'"{name}":'.encode()) for name in sorted(sensitive))).search

    def names_sensitive_key(whole: bytes) -> bool:
        return search(whole.lower() if whole.isascii() else whole.decode("utf-8").lower().encode("utf-8")) is not None

    return names_sensitive_key


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


# What a quarantined record shows of its payload: enough to read what it was about.
_SHOWN_PAYLOAD_FIELDS = frozenset({"tool", "effect", "rule"})


def mask_raw(value: Any) -> Any:
    """A quarantined record for display: sensitive keys masked wherever they appear, and every
    string of its payload but the tool, effect and rule names. A quarantined record carries
    no decision whose mask could be applied to it, so what it holds is not shown; the sealed
    copy keeps it exactly."""
    masked = _mask_keys(value, conf.sensitive_keys(), "", [])
    if isinstance(masked, dict) and isinstance(masked.get("payload"), (dict, list)):
        masked = {**masked, "payload": _mask_strings(masked["payload"])}
    return masked


def _mask_strings(value: Any, key: str = "") -> Any:
    if isinstance(value, str):
        return value if key in _SHOWN_PAYLOAD_FIELDS else MASK
    if isinstance(value, dict):
        return {k: _mask_strings(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_strings(v, key) for v in value]
    return value


# -- sealing ----------------------------------------------------------------------------


def sealer() -> Fernet:
    """The Fernet key that seals original records (the control plane's key for secrets at rest)."""
    return secrets_at_rest()


def seal(data: bytes, fernet: Fernet | None = None) -> bytes:
    """`data` encrypted with the key for secrets at rest."""
    return (fernet or sealer()).encrypt(data)


def unseal(token: bytes, fernet: Fernet | None = None) -> bytes:
    """The original bytes of a sealed record; raises cryptography.fernet.InvalidToken if altered."""
    return (fernet or sealer()).decrypt(bytes(token))
