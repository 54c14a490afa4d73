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
import copy
import hashlib
import json
import math
import os
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
        if not isinstance(session_id, str) or not session_id or len(session_id) > MAX_SESSION_ID_LENGTH:
            raise SigningError(f"session_id must be a non-empty string of at most {MAX_SESSION_ID_LENGTH} characters")
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
    try:
        value = json.loads(line, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except RecordFormatError:
        raise
    except ValueError as exc:
        raise RecordFormatError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise RecordFormatError(f"a record must be a JSON object, not {type(value).__name__}")
    return value


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
    "parse_jsonl_line",
    "payload_problem",
    "read_jsonl",
    "record_hash",
    "signing_bytes",
    "utc_timestamp",
    "write_jsonl",
]
