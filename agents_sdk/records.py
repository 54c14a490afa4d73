"""Signed, hash-chained action records.

Every action an agent takes is written as a record: the intent to call a tool, the
policy decision, the result, and the final output. Each record is canonical JSON,
signed with the agent's Ed25519 key, and carries the SHA-256 of the previous record of
its session, so removing, reordering or editing a record breaks the chain.

The exact format is a contract with the control plane's audit pipeline; it is
specified in docs/signed-records.md. ``agents_sdk.verify`` checks it.

    signer = ActionSigner(identity)
    with signer.session(session_id="ticket-4711") as session:
        session.intent("file_delete", {"path": "/tmp/x"})
        session.decision("allow", reasons=[])
        session.result("deleted 1 file")
        session.output("Done.")
    write_jsonl("session.jsonl", signer.session_log())
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import math
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from agents_sdk.errors import CanonicalJSONError, RecordFormatError, SigningError
from agents_sdk.identity import AgentIdentity

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


# -- canonical JSON --------------------------------------------------------------------


def canonical_json(value: Any) -> bytes:
    """Return the canonical JSON encoding of ``value`` as UTF-8 bytes.

    Object keys sorted, no whitespace (separators ``,`` and ``:``), non-ASCII characters
    written as UTF-8 rather than ``\\u`` escapes. Only JSON values are accepted: dicts
    with string keys, lists or tuples, strings, integers, finite floats, booleans and
    None. Raises CanonicalJSONError naming the offending location otherwise (NaN,
    Infinity, a non-string key, bytes, a datetime, an unpaired surrogate ...).
    """
    _check_json_value(value, "$")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


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


def utc_timestamp(moment: datetime | None = None) -> str:
    """Return ``moment`` (default now) as RFC 3339 UTC with microseconds: ``2025-01-31T12:00:00.000000Z``."""
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is None:
        raise SigningError("record times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- signing ---------------------------------------------------------------------------


class _ChainState:
    __slots__ = ("next_seq", "prev_hash")

    def __init__(self) -> None:
        self.next_seq = 0
        self.prev_hash = GENESIS_HASH


class ActionSigner:
    """Signs an agent's action records and chains them per session.

    ``sink``, if given, is called with each record (a copy) right after it is signed,
    in signing order and under the signer's lock, for example to append it to a JSONL
    file or hand it to a shipper's queue; keep it fast. An exception it raises
    propagates to the caller of ``record``; the record is signed and chained regardless.
    With ``keep_log=False`` the signer does not keep records in memory (for long-running
    agents that rely on the sink), and ``session_log`` returns an empty list.

    Safe to use from several threads: each session's sequence numbers and chain stay
    consistent.
    """

    def __init__(
        self,
        identity: AgentIdentity,
        *,
        sink: Callable[[dict[str, Any]], None] | None = None,
        keep_log: bool = True,
    ) -> None:
        self.identity = identity
        self._sink = sink
        self._keep_log = keep_log
        self._lock = threading.Lock()
        self._chains: dict[str, _ChainState] = {}
        self._log: list[dict[str, Any]] = []
        # Cached: key_id hashes the public key on every access.
        self._agent = identity.name
        self._key_id = identity.key_id

    @contextmanager
    def session(self, session_id: str | None = None) -> Iterator[SignedSession]:
        """Open a session whose records share one chain; yields a ``SignedSession``.

        ``session_id`` defaults to a new UUID. Reopening a session id this signer has
        already used continues its chain. Raises SigningError for an invalid session id.
        """
        if session_id is None:
            session_id = str(uuid.uuid4())
        problem = text_problem(session_id, "session_id", max_length=MAX_SESSION_ID_LENGTH)
        if problem:
            raise SigningError(problem)
        session = SignedSession(self, session_id)
        try:
            yield session
        finally:
            session._closed = True

    def session_log(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """Return copies of the records signed so far, in signing order.

        All sessions by default, or only those of ``session_id``.
        """
        with self._lock:
            records = [r for r in self._log if session_id is None or r["session_id"] == session_id]
            return copy.deepcopy(records)

    def sign_record(self, session_id: str, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Build, sign and chain one record of ``session_id``; return a copy of it.

        Prefer ``SignedSession.record``. Raises SigningError if the kind is unknown or
        the payload lacks a required field, CanonicalJSONError if it is not JSON.
        """
        payload = dict(payload)
        _check_payload(kind, payload)
        _check_json_value(payload, "payload")
        # The control plane refuses what it cannot store; a record signed here always passes.
        problem = value_problem(payload, "payload")
        if problem:
            raise SigningError(problem)
        with self._lock:
            chain = self._chains.setdefault(session_id, _ChainState())
            record: dict[str, Any] = {
                "record_id": str(uuid.uuid4()),
                "agent": self._agent,
                "key_id": self._key_id,
                "session_id": session_id,
                "seq": chain.next_seq,
                "kind": kind,
                "time": utc_timestamp(),
                "payload": copy.deepcopy(payload),
                "prev_hash": chain.prev_hash,
            }
            record["signature"] = base64.b64encode(self.identity.sign(signing_bytes(record))).decode("ascii")
            chain.prev_hash = record_hash(record)
            chain.next_seq += 1
            if self._keep_log:
                self._log.append(record)
            # Under the lock, so a sink sees each session's records in chain order.
            if self._sink is not None:
                self._sink(copy.deepcopy(record))
            return copy.deepcopy(record)


class SignedSession:
    """One session of an ``ActionSigner``; obtained from ``signer.session()``."""

    def __init__(self, signer: ActionSigner, session_id: str) -> None:
        self.signer = signer
        self.session_id = session_id
        self._closed = False

    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Sign a record of ``kind`` whose payload is ``fields``; return it.

        Kinds and their required fields: ``intent`` (tool, args), ``decision`` (effect
        in allow/deny/require_approval, reasons), ``result`` (summary), ``output``
        (output). Other fields are kept in the payload. Raises SigningError if the
        session is closed, the kind unknown or a field missing; CanonicalJSONError if
        a value is not JSON.
        """
        if self._closed:
            raise SigningError(f"session {self.session_id!r} is closed; open a new one with signer.session()")
        return self.signer.sign_record(self.session_id, kind, fields)

    def intent(self, tool: str, args: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """Record the intent to call ``tool`` with ``args``."""
        return self.record("intent", tool=tool, args=dict(args or {}), **fields)

    def decision(self, effect: str, reasons: Iterable[Any] = (), **fields: Any) -> dict[str, Any]:
        """Record the policy decision (``allow``, ``deny`` or ``require_approval``) and its reasons."""
        return self.record("decision", effect=effect, reasons=list(reasons), **fields)

    def result(self, summary: str, **fields: Any) -> dict[str, Any]:
        """Record a summary of the tool call's result."""
        return self.record("result", summary=summary, **fields)

    def output(self, output: Any, **fields: Any) -> dict[str, Any]:
        """Record the agent's final output."""
        return self.record("output", output=output, **fields)


def _check_payload(kind: str, payload: Mapping[str, Any]) -> None:
    problem = payload_problem(kind, payload)
    if problem:
        raise SigningError(problem)


def payload_problem(kind: str, payload: Any) -> str | None:
    """Return why ``payload`` is not a valid payload for ``kind``, or None if it is."""
    required = KIND_REQUIRED_FIELDS.get(kind)
    if required is None:
        return f"kind {kind!r} is not one of {', '.join(RECORD_KINDS)}"
    if not isinstance(payload, Mapping):
        return "payload is not an object"
    for name, check in required.items():
        if name not in payload:
            return f"{kind} payload needs {name!r}"
        if not check(payload[name]):
            if name == "effect":
                return f"decision effect {payload[name]!r} is not one of {', '.join(DECISION_EFFECTS)}"
            return f"{kind} payload field {name!r} has the wrong type ({type(payload[name]).__name__})"
    return None


# -- the form of a record (shared with the control plane and the offline verifier) -----


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


# -- JSONL -----------------------------------------------------------------------------


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]], *, append: bool = False) -> int:
    """Write records to ``path``, one canonical JSON object per line; return how many.

    Raises CanonicalJSONError if a record holds a non-JSON value (nothing is written
    then), OSError if the file cannot be written.
    """
    lines = [canonical_json(record) + b"\n" for record in records]
    with open(path, "ab" if append else "wb") as handle:
        handle.writelines(lines)
        handle.flush()
        os.fsync(handle.fileno())
    return len(lines)


def parse_jsonl_line(line: str | bytes) -> dict[str, Any]:
    """Parse one JSONL line into an object, strictly.

    Rejects NaN/Infinity and objects with duplicate keys: two parsers reading different
    values from the same bytes would defeat the signature. Raises RecordFormatError.
    """
    value = loads_strict(line)
    if not isinstance(value, dict):
        raise RecordFormatError(f"a record must be a JSON object, not {type(value).__name__}")
    return value


def loads_strict(data: str | bytes) -> Any:
    """Parse JSON strictly: duplicate keys, NaN and Infinity refused; nesting too deep for the
    parser is an error, not a crash. Raises RecordFormatError naming the problem."""
    try:
        return json.loads(data, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except RecordFormatError:
        raise
    except RecursionError as exc:
        raise RecordFormatError("not valid JSON: nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of too many digits
        raise RecordFormatError(f"not valid JSON: {exc}") from exc


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any] | RecordFormatError]]:
    """Yield ``(line_number, record)`` for each non-blank line of a JSONL file.

    A line that is not a JSON object yields a RecordFormatError (with ``line`` set)
    in place of the record, so a verifier can report it in order. Raises OSError if
    the file cannot be read.
    """
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, parse_jsonl_line(line)
            except RecordFormatError as exc:
                yield number, RecordFormatError(f"line {number}: {exc}", line=number)


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read every record of a JSONL file, skipping blank lines.

    Raises RecordFormatError naming the first line that is not a JSON object,
    OSError if the file cannot be read.
    """
    records = []
    for _, item in iter_jsonl(path):
        if isinstance(item, RecordFormatError):
            raise item
        records.append(item)
    return records


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise RecordFormatError(f"duplicate key {key!r} in an object")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise RecordFormatError(f"{name} is not valid JSON")


__all__ = [
    "GENESIS_HASH",
    "RECORD_FIELDS",
    "RECORD_KINDS",
    "ActionSigner",
    "SignedSession",
    "canonical_json",
    "iter_jsonl",
    "loads_strict",
    "parse_jsonl_line",
    "parse_time",
    "payload_problem",
    "read_jsonl",
    "record_form_problem",
    "record_hash",
    "signing_bytes",
    "text_problem",
    "utc_timestamp",
    "value_problem",
    "write_jsonl",
]
