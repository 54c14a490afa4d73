"""``ActionSigner``: signs an agent's action records and chains them per session.

Each record is built once: the payload is validated while it is encoded
(``signable_payload``), the record's canonical bytes are assembled around it (the header
fields are plain strings and numbers, the keys in their sorted order), the Ed25519
signature covers those bytes, and the chain hash is taken over the same bytes with the
signature spliced in. Nothing is deep-copied: the record's payload is decoded from the
signed bytes, so it shares nothing with the caller.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents_sdk.errors import SigningError
from agents_sdk.identity import AgentIdentity
from agents_sdk.records.canonical import json_string, record_head, seal, signable_payload, utc_timestamp
from agents_sdk.records.form import GENESIS_HASH, MAX_SESSION_ID_LENGTH, payload_problem, text_problem

if TYPE_CHECKING:  # the background signer needs POSIX file locks: imported only when used
    from agents_sdk.records.background import BackgroundSigning, RecoveredSpool

_DECODE = json.JSONDecoder().decode


class _ChainState:
    __slots__ = ("next_seq", "prev_hash", "session_json")

    def __init__(self, session_id: str) -> None:
        self.next_seq = 0
        self.prev_hash = GENESIS_HASH
        self.session_json = json_string(session_id)


class ActionSigner:
    """Signs an agent's action records and chains them per session.

    ``sink``, if given, is called with each record (a copy) right after it is signed,
    in signing order and under the signer's lock, for example to append it to a JSONL
    file or hand it to a shipper's queue; keep it fast. An exception it raises
    propagates to the caller of ``record``; the record is signed and chained regardless.
    With ``keep_log=False`` the signer does not keep records in memory (for long-running
    agents that rely on the sink), and ``session_log`` returns an empty list.

    With ``spool_dir`` the signer signs in the background (``agents_sdk.records.background``,
    docs/signed-records.md): ``append`` puts a record on a crash-safe spool file with one
    ``os.write`` and returns; a separate signer process signs and chains it and writes it to
    the signer's log (``log_path``), so no signature takes this process's GIL. A sink is
    called from a thread of this process as records are signed, in signing order (a sink's
    exception is logged, and stops the signer). ``sign_record`` and ``SignedSession.record``
    still return the signed record (they wait for it); ``session_log`` and ``flush`` wait for
    everything appended so far. Opening a signer on a directory first signs what dead
    signers of the same key left there (delivered to this signer's log and sink). A signer
    process that dies is replaced; one whose agent dies finishes the spool.
    ``fsync=True`` also fsyncs the spool on every append (survives a power cut);
    ``max_pending`` unsigned records (default 10,000) make ``append`` wait (backpressure, never a drop).
    With a sink, the spool and log start a new segment once the log passes ``rotate_bytes``
    (default 64 MiB) and the sink has every record, so a long-running agent's files stay bounded
    (``log_path`` then names the current segment).
    Call ``close()`` when done (it also runs at interpreter exit).

    Safe to use from several threads: each session's sequence numbers and chain stay
    consistent.
    """

    def __init__(
        self,
        identity: AgentIdentity,
        *,
        sink: Callable[[dict[str, Any]], None] | None = None,
        keep_log: bool = True,
        spool_dir: str | os.PathLike[str] | None = None,
        fsync: bool = False,
        max_pending: int | None = None,
        rotate_bytes: int | None = None,
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
        self._head = record_head(self._agent, self._key_id)
        self._background: BackgroundSigning | None = None
        self._sessions: dict[str, bytes] = {}  # background mode: checked session ids, JSON-encoded
        self.recovered: list[RecoveredSpool] = []
        if spool_dir is not None:
            from agents_sdk.records.background import (
                DEFAULT_MAX_PENDING,
                DEFAULT_ROTATE_BYTES,
                BackgroundSigning,
                recover_spool,
            )

            self.recovered = recover_spool(spool_dir, identity, self._deliver)
            # Signed lines are read back from the log only when someone keeps or receives them.
            deliver = self._deliver if keep_log or sink is not None else None
            self._background = BackgroundSigning(
                identity,
                spool_dir,
                deliver,
                eager=sink is not None,
                fsync=fsync,
                max_pending=max_pending or DEFAULT_MAX_PENDING,
                rotate_bytes=rotate_bytes or DEFAULT_ROTATE_BYTES,
            )

    @property
    def background(self) -> bool:
        """True when records are signed off the caller's thread (``spool_dir`` was given)."""
        return self._background is not None

    @property
    def log_path(self) -> Path | None:
        """The JSONL log the background signer writes (None when signing synchronously)."""
        return self._background.log_path if self._background is not None else None

    def append(self, session_id: str, kind: str, payload: Mapping[str, Any]) -> None:
        """Record ``payload`` of ``kind`` in ``session_id``: on the spool when this returns,
        signed later (background mode), or signed now.

        Raises SigningError / CanonicalJSONError as ``sign_record`` does (before anything is
        written), SigningError if the spool cannot be written.
        """
        self.append_many(session_id, ((kind, payload),))

    def append_many(self, session_id: str, records: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """``append`` several records of one session, in order, with one spool write."""
        background = self._background
        if background is None:
            for kind, payload in records:
                self.sign_record(session_id, kind, payload)
            return
        encoded = []
        for kind, payload in records:
            problem = payload_problem(kind, payload)
            if problem:
                raise SigningError(problem)
            encoded.append((kind, signable_payload(payload if type(payload) is dict else dict(payload))[0]))
        background.append(session_id, self._session_json(session_id), encoded)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record appended so far is signed and delivered (True), or
        ``timeout`` seconds passed (False). Raises SigningError if background signing failed."""
        return self._background.flush(timeout) if self._background is not None else True

    def stats(self) -> dict[str, Any]:
        """Background signing's counters (appended, signed, pending, signer_pid, restarts,
        error, spool and log paths); an empty dict when signing in the call."""
        return self._background.stats() if self._background is not None else {}

    def close(self) -> None:
        """Flush and stop background signing (its spool is removed; its log stays)."""
        if self._background is not None:
            self._background.close()

    def _session_json(self, session_id: str) -> bytes:
        session_json = self._sessions.get(session_id)
        if session_json is None:
            problem = text_problem(session_id, "session_id", max_length=MAX_SESSION_ID_LENGTH)
            if problem:
                raise SigningError(problem)
            session_json = self._sessions[session_id] = json_string(session_id)
        return session_json

    def _deliver(self, session_id: str, line: bytes) -> None:
        """The background signer's hand-off of one signed record."""
        if self._keep_log:
            with self._lock:
                self._log.append((session_id, line))
        if self._sink is not None:
            self._sink(_DECODE(line.decode("utf-8")))

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

        All sessions by default, or only those of ``session_id``. In background mode it
        waits for the records appended so far first.
        """
        self.flush()
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
        if self._background is not None:
            return self._sign_in_background(session_id, kind, payload_json)
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
            line, signature = seal(
                self.identity.sign, self._head, kind, payload_json, prev_hash, record_id, seq, chain.session_json, time
            )
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
                "signature": signature,
            }
            if self._keep_log:
                self._log.append((session_id, line))
            # Under the lock, so a sink sees each session's records in chain order.
            if self._sink is not None:
                self._sink(dict(record, payload=_DECODE(payload_json.decode("utf-8"))))
            return record

    def _sign_in_background(self, session_id: str, kind: str, payload_json: bytes) -> dict[str, Any]:
        assert self._background is not None
        background = self._background
        session_json = self._session_json(session_id)
        index = background.append(session_id, session_json, ((kind, payload_json),), keep_signed=True)
        record: dict[str, Any] = _DECODE(background.signed_line(index).decode("utf-8"))
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
