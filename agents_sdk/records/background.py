"""Signing off the hot path: a spool written before the call returns, and a thread that signs.

``ActionSigner(identity, spool_dir=...)`` uses a ``BackgroundSigning``. A governed call only
encodes each record's payload (once, validated, as the synchronous signer does) and appends
one line per record to the signer's spool file with a single ``os.write``; a thread signs the
records in spool order, chains them per session, appends the signed lines to the signer's log
and hands each one to the signer's sink and in-memory log. Cryptography's Ed25519 ``sign``
releases the GIL, so on a machine with a second core the signing runs beside the agent.

Files of one signer (``<stem>`` = agent, start time, pid, a random tag):

- ``<stem>.spool``: a header line (JSON: format, agent, key_id, salt), then one line per
  record, ``<time_ns>,<kind>,<len(session_json)>:<session_json><payload_json>``. Held under an
  exclusive ``flock`` while the signer lives; removed by ``close()`` once everything is signed.
- ``<stem>.jsonl``: the signed records, one canonical JSON line each, in signing order: a log
  ``warden audit verify`` reads.

Everything that varies in a record is fixed by the spool: ``time`` is the moment of the
append, ``record_id`` is derived from the spool's random salt and the entry's position, and
Ed25519 is deterministic. So a spool left by a process that died (its ``flock`` is free) is
signed again by ``recover_spool`` (run by every signer opened on the same directory) with
byte-identical results: the log gets exactly the records it lacked, in order.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any

from agents_sdk.errors import SigningError
from agents_sdk.identity import AgentIdentity
from agents_sdk.records.canonical import record_head, seal
from agents_sdk.records.form import GENESIS_HASH, RECORD_KINDS
from agents_sdk.records.jsonl import loads_strict

logger = logging.getLogger(__name__)

SPOOL_FORMAT = "warden-signer-spool/1"
DEFAULT_MAX_PENDING = 10_000
"""Records appended but not yet signed before ``append`` waits (backpressure, never a drop)."""
_BATCH = 64
_NAP_BACKLOG = 128

Deliver = Callable[[str, bytes], None]
"""Called with (session_id, signed line) for every record, in signing order."""


def record_id_for(salt: bytes, index: int) -> str:
    """The record id of spool entry ``index``: a version-4 UUID drawn from SHA-256(salt, index)."""
    raw = bytearray(hashlib.sha256(salt + index.to_bytes(8, "big")).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_last_second: tuple[int, str] = (-1, "")  # replaced whole, so threads never see half of it


def time_of(time_ns: int) -> str:
    """RFC 3339 UTC with microseconds, as ``utc_timestamp`` writes it."""
    global _last_second
    seconds, micros = divmod(time_ns // 1000, 1_000_000)
    cached = _last_second
    if cached[0] != seconds:
        cached = _last_second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{cached[1]}.{micros:06d}Z"


class _Chains:
    """Per-session chain heads and the sealing of one spool entry."""

    def __init__(self, identity: AgentIdentity, salt: bytes) -> None:
        self.identity = identity
        self.salt = salt
        self.head = record_head(identity.name, identity.key_id)
        self.heads: dict[str, tuple[int, str]] = {}

    def seal(self, index: int, session_id: str, session_json: bytes, kind: str, time_ns: int,
             payload_json: bytes) -> bytes:
        seq, prev_hash = self.heads.get(session_id, (0, GENESIS_HASH))
        line, _ = seal(self.identity.sign, self.head, kind, payload_json, prev_hash, record_id_for(self.salt, index),
                       seq, session_json, time_of(time_ns))
        self.heads[session_id] = (seq + 1, hashlib.sha256(line).hexdigest())
        return line


class BackgroundSigning:
    """The spool and signing thread of one ``ActionSigner``; see the module docstring."""

    def __init__(self, identity: AgentIdentity, spool_dir: str | os.PathLike[str], deliver: Deliver, *,
                 fsync: bool = False, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        directory = Path(spool_dir)
        directory.mkdir(parents=True, exist_ok=True)
        stem = f"{_slug(identity.name)}-{time.time_ns()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.spool_path = directory / f"{stem}.spool"
        self.log_path = directory / f"{stem}.jsonl"
        self._deliver = deliver
        self._fsync = fsync
        self._max_pending = max_pending
        salt = os.urandom(16)
        self._chains = _Chains(identity, salt)
        self._fd = os.open(self.spool_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel if this process dies
        header = {"format": SPOOL_FORMAT, "agent": identity.name, "key_id": identity.key_id, "salt": salt.hex()}
        _write_all(self._fd, json.dumps(header, sort_keys=True).encode("ascii") + b"\n")
        os.fsync(self._fd)
        self._log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        _fsync_dir(directory)

        # Two locks, so the signing thread never holds the one the calls take: ``_lock`` keeps
        # spool order = queue order; ``_progress`` guards what the thread reports.
        self._lock = threading.Lock()
        self._progress = threading.Condition(threading.Lock())
        self._waiting = 0
        # One item per append: (index of its first record, session_id, session_json, time_ns, records).
        self._queue: SimpleQueue[tuple[int, str, bytes, int, Sequence[tuple[str, bytes]]] | None] = SimpleQueue()
        self._appended = 0  # entries written to the spool
        self._signed = 0  # entries signed, delivered and written to the log
        self._wanted: dict[int, bytes | None] = {}
        self._error: str | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="warden-record-signer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- the hot path ---------------------------------------------------------------------

    def append(self, session_id: str, session_json: bytes, records: Sequence[tuple[str, bytes]], *,
               keep_signed: bool = False) -> int:
        """Spool records (kind, canonical payload bytes) of one session with one ``os.write``;
        return the index of the last. The records are on the spool when this returns. With
        ``keep_signed`` the last one's signed line is kept for ``signed_line``.

        Waits while ``max_pending`` records are unsigned (checked before the spool lock is taken,
        so callers appending at the same moment may pass it by one append each). Raises SigningError if the signer is
        closed or its spool cannot be written (nothing is then on record: the call must not run).
        """
        now = time.time_ns()
        length = len(session_json)
        data = b"".join([b"%d,%s,%d:%s%s\n" % (now, kind.encode("ascii"), length, session_json, payload_json)
                         for kind, payload_json in records])
        if self._appended - self._signed >= self._max_pending:
            self._wait_for_room()
        with self._lock:
            if self._error is not None or self._closed:
                raise SigningError(self._error or "the signer is closed; records can no longer be signed")
            try:
                written = os.write(self._fd, data)  # under the lock: spool order is signing order
                if written != len(data):
                    _write_all(self._fd, data[written:])
                if self._fsync:
                    os.fsync(self._fd)
            except OSError as exc:
                # A partial line may be on the spool now: refuse everything after it.
                self._error = f"cannot write the record spool {self.spool_path}: {exc}"
                raise SigningError(self._error) from exc
            first = self._appended
            self._appended = first + len(records)
            if keep_signed:
                with self._progress:
                    self._wanted[self._appended - 1] = None
            self._queue.put((first, session_id, session_json, now, records))
            return self._appended - 1

    def _wait_for_room(self) -> None:
        with self._progress:
            while self._appended - self._signed >= self._max_pending and self._error is None and not self._closed:
                self._waiting += 1
                try:
                    self._progress.wait()
                finally:
                    self._waiting -= 1

    # -- waiting for signatures -------------------------------------------------------------

    def signed_line(self, index: int) -> bytes:
        """Wait until entry ``index`` (appended with ``keep_signed``) is signed; return its line."""
        self.wait_for(index + 1)
        with self._progress:
            line = self._wanted.pop(index)
        assert line is not None
        return line

    def wait_for(self, count: int, timeout: float | None = None) -> bool:
        """Wait until the first ``count`` entries are signed; False if ``timeout`` passed first.
        Raises SigningError if signing failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._progress:
            while self._signed < count and self._error is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._waiting += 1
                try:
                    self._progress.wait(remaining)
                finally:
                    self._waiting -= 1
            if self._error is not None:
                raise SigningError(self._error)
            return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record appended so far is signed, delivered and in the log."""
        with self._lock:
            target = self._appended
        return self.wait_for(target, timeout)

    def close(self) -> None:
        """Flush, stop the thread, and remove the spool (everything on it is signed)."""
        with self._lock:
            if self._closed:
                return
        atexit.unregister(self.close)
        complete = False
        try:
            complete = self.flush()
        finally:
            with self._lock, self._progress:  # the calls' lock first, as append takes them
                self._closed = True
                self._progress.notify_all()
            self._queue.put(None)
            self._thread.join()
            os.fsync(self._log_fd)
            os.close(self._log_fd)
            if complete and self._error is None:
                self.spool_path.unlink(missing_ok=True)
            os.close(self._fd)  # releases the flock: an unsigned remainder is left for recovery

    def stats(self) -> dict[str, Any]:
        with self._progress:
            return {"appended": self._appended, "signed": self._signed, "pending": self._appended - self._signed,
                    "spool": str(self.spool_path), "log": str(self.log_path), "error": self._error}

    # -- the signing thread -----------------------------------------------------------------

    def _run(self) -> None:
        get, get_nowait, chains = self._queue.get, self._queue.get_nowait, self._chains
        qsize, monotonic = self._queue.qsize, time.monotonic
        while True:
            batch = [get()]
            # Sign when the caller pauses: while appends keep coming (and nobody waits for a
            # signature), nap 1 ms at a time, up to 20 ms or _NAP_BACKLOG pending appends.
            # The records are on the spool already; this only keeps the GIL off a busy caller.
            until = monotonic() + 0.02
            while self._waiting == 0 and qsize() < _NAP_BACKLOG and monotonic() < until:
                seen = qsize()
                time.sleep(0.001)
                if qsize() == seen:
                    break
            while len(batch) < _BATCH:
                try:
                    batch.append(get_nowait())
                except Empty:
                    break
            signed: list[tuple[int, str, bytes]] = []
            stop = False
            try:
                for item in batch:
                    if item is None:
                        stop = True
                        continue
                    index, session_id, session_json, time_ns, records = item
                    for kind, payload_json in records:
                        signed.append((index, session_id, chains.seal(index, session_id, session_json, kind, time_ns,
                                                                     payload_json)))
                        index += 1
                for _, session_id, line in signed:
                    self._deliver(session_id, line)
                if signed:
                    _write_all(self._log_fd, b"".join(line + b"\n" for _, _, line in signed))
            except Exception as exc:  # noqa: BLE001 - surfaced to every caller from here on
                logger.exception("the background record signer failed")
                with self._progress:
                    self._error = f"signing records failed: {exc}"
                    self._progress.notify_all()
                return
            with self._progress:
                if self._wanted:
                    for index, _, line in signed:
                        if index in self._wanted:
                            self._wanted[index] = line
                self._signed += len(signed)
                if self._waiting:
                    self._progress.notify_all()
            if stop:
                return


@dataclass(frozen=True)
class RecoveredSpool:
    """What ``recover_spool`` did with one spool a dead signer left."""

    spool: Path
    log: Path
    already_signed: int
    recovered: int
    problem: str | None = None


def recover_spool(spool_dir: str | os.PathLike[str], identity: AgentIdentity,
                  deliver: Deliver | None = None) -> list[RecoveredSpool]:
    """Sign what dead signers of ``identity`` left unsigned in ``spool_dir``, in spool order.

    A spool whose ``flock`` is held belongs to a live signer and is left alone, as is one of
    another key (named in ``problem``). For each other spool: the records its log already
    holds are kept (a torn last line is cut off), the rest are signed exactly as the dead
    signer would have signed them, appended to its log (fsynced) and passed to ``deliver``;
    then the spool is removed. A torn last spool line (a machine crash) ends the spool.
    """
    results: list[RecoveredSpool] = []
    directory = Path(spool_dir)
    if not directory.is_dir():
        return results
    for spool in sorted(directory.glob("*.spool")):
        try:
            fd = os.open(spool, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live signer's
            if not os.path.exists(spool):
                continue  # recovered by another process meanwhile
            results.append(_recover_one(spool, identity, deliver))
        finally:
            os.close(fd)
    return results


def _recover_one(spool: Path, identity: AgentIdentity, deliver: Deliver | None) -> RecoveredSpool:
    log = spool.with_suffix(".jsonl")
    lines = spool.read_bytes().split(b"\n")
    try:
        header = json.loads(lines[0])
        salt = bytes.fromhex(header["salt"])
        key_id = header["key_id"]
        if header.get("format") != SPOOL_FORMAT:
            raise ValueError(f"format {header.get('format')!r}")
    except (ValueError, KeyError, TypeError) as exc:
        return RecoveredSpool(spool, log, 0, 0, f"not a signer spool ({exc})")
    if key_id != identity.key_id:
        return RecoveredSpool(spool, log, 0, 0, f"signed with key {key_id}, not this identity's")
    # Every complete line ends in \n: the last element of the split is the torn remainder (or b"").
    entries = []
    for raw in lines[1:-1]:
        entry = _parse_entry(raw)
        if entry is None:
            break  # a torn or garbled line: nothing after it was appended by a call that returned
        entries.append(entry)

    chains = _Chains(identity, salt)
    done = 0
    if log.exists():
        content = log.read_bytes()
        complete = content[: content.rfind(b"\n") + 1]
        if len(complete) != len(content):
            with open(log, "r+b") as handle:
                handle.truncate(len(complete))
        for line in complete.splitlines():
            record = loads_strict(line)
            chains.heads[record["session_id"]] = (record["seq"] + 1, hashlib.sha256(line).hexdigest())
            done += 1
    if done > len(entries):
        return RecoveredSpool(spool, log, done, 0, f"the log holds {done} records, the spool only {len(entries)}")
    recovered = []
    for index in range(done, len(entries)):
        session_id, session_json, kind, time_ns, payload_json = entries[index]
        line = chains.seal(index, session_id, session_json, kind, time_ns, payload_json)
        recovered.append((session_id, line))
    if recovered:
        with open(log, "ab") as handle:
            handle.write(b"".join(line + b"\n" for _, line in recovered))
            handle.flush()
            os.fsync(handle.fileno())
    if deliver is not None:
        for session_id, line in recovered:
            deliver(session_id, line)
    spool.unlink()
    return RecoveredSpool(spool, log, done, len(recovered))


def _parse_entry(raw: bytes) -> tuple[str, bytes, str, int, bytes] | None:
    try:
        head, rest = raw.split(b":", 1)
        stamp, kind_bytes, length_text = head.split(b",")
        length = int(length_text)
        session_json, payload_json = rest[:length], rest[length:]
        session_id = loads_strict(session_json)
        kind = kind_bytes.decode("ascii")
        if not isinstance(session_id, str) or kind not in RECORD_KINDS or not isinstance(loads_strict(payload_json), dict):
            return None
        return session_id, session_json, kind, int(stamp), payload_json
    except (ValueError, UnicodeDecodeError):  # RecordFormatError is a ValueError
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64] or "agent"


__all__ = ["DEFAULT_MAX_PENDING", "SPOOL_FORMAT", "BackgroundSigning", "RecoveredSpool", "recover_spool",
           "record_id_for", "time_of"]
