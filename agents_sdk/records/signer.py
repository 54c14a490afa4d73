"""``ActionSigner``: signs an agent's action records and chains them per session.

Each record is built once: the payload is validated while it is encoded
(``signable_payload``), the record's canonical bytes are assembled around it (the header
fields are plain strings and numbers, the keys in their sorted order), the Ed25519
signature covers those bytes, and the chain hash is taken over the same bytes with the
signature spliced in. Nothing is deep-copied: the record's payload is decoded from the
signed bytes, so it shares nothing with the caller.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from agents_sdk.errors import SigningError
from agents_sdk.identity import AgentIdentity
from agents_sdk.records.canonical import signable_payload, utc_timestamp
from agents_sdk.records.form import GENESIS_HASH, MAX_SESSION_ID_LENGTH, payload_problem, text_problem

_DECODE = json.JSONDecoder().decode


def _json_string(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode("utf-8")


class _ChainState:
    __slots__ = ("next_seq", "prev_hash", "session_json")

    def __init__(self, session_id: str) -> None:
        self.next_seq = 0
        self.prev_hash = GENESIS_HASH
        self.session_json = _json_string(session_id)


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
        # (session_id, canonical bytes) per record: compact, and every read decodes a fresh copy.
        self._log: list[tuple[str, bytes]] = []
        # Cached: key_id hashes the public key on every access.
        self._agent = identity.name
        self._key_id = identity.key_id
        self._head = b'{"agent":' + _json_string(self._agent) + b',"key_id":"' + self._key_id.encode("ascii") + b'","kind":"'

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
            lines = [line for sid, line in self._log if session_id is None or sid == session_id]
        return [_DECODE(line.decode("utf-8")) for line in lines]

    def sign_record(self, session_id: str, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Build, sign and chain one record of ``session_id``; return a copy of it.

        Prefer ``SignedSession.record``. Raises SigningError if the kind is unknown or
        the payload lacks a required field, CanonicalJSONError if it is not JSON.
        """
        problem = payload_problem(kind, payload)
        if problem:
            raise SigningError(problem)
        # The control plane refuses what it cannot store; a record signed here always passes.
        payload_json, payload_copy = signable_payload(payload if type(payload) is dict else dict(payload))
        record_id = str(uuid.uuid4())
        time = utc_timestamp()
        with self._lock:
            chain = self._chains.get(session_id)
            if chain is None:
                # A session id used before sign_record's own check (SignedSession checks it on opening).
                problem = text_problem(session_id, "session_id", max_length=MAX_SESSION_ID_LENGTH)
                if problem:
                    raise SigningError(problem)
                chain = self._chains[session_id] = _ChainState(session_id)
            seq = chain.next_seq
            prev_hash = chain.prev_hash
            # Sorted keys: agent, key_id, kind, payload, prev_hash, record_id, seq, session_id,
            # [signature], time. Every header value is ASCII or JSON-escaped already.
            body = b"".join((
                self._head, kind.encode("ascii"), b'","payload":', payload_json, b',"prev_hash":"',
                prev_hash.encode("ascii"), b'","record_id":"', record_id.encode("ascii"), b'","seq":',
                str(seq).encode("ascii"), b',"session_id":', chain.session_json, b","
            ))
            tail = b'"time":"' + time.encode("ascii") + b'"}'
            signature = base64.b64encode(self.identity.sign(body + tail))
            line = b"".join((body, b'"signature":"', signature, b'",', tail))
            chain.prev_hash = hashlib.sha256(line).hexdigest()
            chain.next_seq = seq + 1
            record: dict[str, Any] = {
                "record_id": record_id,
                "agent": self._agent,
                "key_id": self._key_id,
                "session_id": session_id,
                "seq": seq,
                "kind": kind,
                "time": time,
                "payload": payload_copy,
                "prev_hash": prev_hash,
                "signature": signature.decode("ascii"),
            }
            if self._keep_log:
                self._log.append((session_id, line))
            # Under the lock, so a sink sees each session's records in chain order.
            if self._sink is not None:
                self._sink(dict(record, payload=_DECODE(payload_json.decode("utf-8"))))
            return record


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


__all__ = ["ActionSigner", "SignedSession"]
