"""Signing off the hot path: a spool written before the call returns, and a process that signs.

``ActionSigner(identity, spool_dir=...)`` uses a ``BackgroundSigning``. A governed call only
encodes each record's payload (once, validated, as the synchronous signer does) and appends
one line per record to the signer's spool file with a single ``os.write``, then rings the
signer process (one byte on a pipe). The signer process (``agents_sdk.records.signer_process``)
tails the spool, signs the records in spool order, chains them per session and appends them
to the signer's log; it reports how many it signed. No signature, hash or log write ever
takes the agent's GIL. The agent reads signed lines back from the log only when asked for
them (``sign_record``, ``session_log``) or to hand them to a sink.

The spool format and the signing it shares with recovery are in ``agents_sdk.records.spool``.
If the signer process dies, the agent starts another (``agents_sdk.records.signer_watcher``),
which continues the log where the dead one stopped; if the agent dies, its signer process
finishes the spool and removes it.
"""

from __future__ import annotations

import atexit
import mmap
import os
import struct
import subprocess
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from agents_sdk.errors import SigningError
from agents_sdk.identity import AgentIdentity
from agents_sdk.records.signer_watcher import MAX_RESTARTS, SignerWatcher
from agents_sdk.records.spool import (
    SPOOL_FORMAT,
    Deliver,
    RecoveredSpool,
    chain_heads,
    fsync_dir,
    open_segment,
    record_id_for,
    recover_spool,
    session_of,
    time_of,
    write_all,
)

# The shared page: bytes the signer process sets (asleep) and the agent sets (listening), and
# the signer's count of records in the log (8 bytes, little-endian).
_ASLEEP, _LISTENING, _SIGNED = 0, 1, 8
_COUNT = struct.Struct("<Q")
_RECHECK = 0.05
DEFAULT_MAX_PENDING = 10_000
"""Records appended but not yet signed before ``append`` waits (backpressure, never a drop)."""
DEFAULT_ROTATE_BYTES = 64 << 20
"""Log size past which a signer with a sink starts a new spool and log segment (see ``_maybe_rotate``)."""
_ROTATE_WAIT = 10.0  # seconds a rotation waits, appends held, for the signer to catch up
_live: weakref.WeakSet[BackgroundSigning] = weakref.WeakSet()


class BackgroundSigning(SignerWatcher):
    """The spool and signer process of one ``ActionSigner``; see the module docstring.

    ``deliver`` is called with every signed line, in order: from a thread as soon as they are
    signed when ``eager`` (a sink waits for them), else when the caller flushes. Without
    ``deliver`` nothing is read back but the lines ``signed_line`` asks for.
    """

    def __init__(
        self,
        identity: AgentIdentity,
        spool_dir: str | os.PathLike[str],
        deliver: Deliver | None,
        *,
        eager: bool = False,
        fsync: bool = False,
        max_pending: int = DEFAULT_MAX_PENDING,
        rotate_bytes: int = DEFAULT_ROTATE_BYTES,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        if rotate_bytes < 1:
            raise ValueError("rotate_bytes must be at least 1")
        self._directory = Path(spool_dir)
        self._directory.mkdir(parents=True, exist_ok=True)
        self._identity_name, self._key_id = identity.name, identity.key_id
        self._deliver = deliver
        self._eager = eager and deliver is not None
        self._fsync = fsync
        self._max_pending = max_pending
        # Segments rotate only with a sink: without one, the log is where the records end up.
        self._rotate_bytes = rotate_bytes if self._eager else None
        self._seed = identity.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        self.spool_path, self.log_path, self._fd = open_segment(self._directory, self._identity_name, self._key_id, {})
        self._log_reader = os.open(self.log_path, os.O_RDONLY | os.O_CLOEXEC)
        self._base = 0  # entries in the segments before this one: the signer counts from 0 in each
        self._log_bytes = 0  # complete lines read from this segment's log
        self._last: dict[str, bytes] = {}  # with rotation: the last signed line of each session
        self._rotations = 0

        # ``_lock`` keeps spool order and guards the doorbell; ``_progress`` what the signer reports.
        self._lock = threading.Lock()
        self._progress = threading.Condition(threading.Lock())
        self._appended = 0  # entries written to the spool
        self._signed = 0  # entries the signer process reports in the log
        self._error: str | None = None
        self._closed = False
        self._restarts = 0
        # Reading the log back: lines delivered so far, the bytes of a line not yet complete.
        self._reading = threading.Lock()
        self._delivered = 0
        self._partial = b""
        self._wanted: dict[int, bytes | None] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._bell = -1
        # A page both processes map (``_ASLEEP``, ``_LISTENING``, ``_SIGNED``): the agent rings
        # only when the signer sleeps, and the signer reports only when the agent listens (each
        # a syscall and a wake-up; a report also takes this process's GIL). Without memfd (not
        # Linux), the agent rings after every append and the signer reports every batch.
        self._shared: mmap.mmap | None = None
        self._shared_fd = -1
        self._listeners = 0
        self._rings = 0  # doorbell rings and reports received: what the shared page saves
        self._reports = 0
        self._fence = threading.Lock()
        if hasattr(os, "memfd_create"):
            self._shared_fd = os.memfd_create("warden-signer", os.MFD_CLOEXEC)
            os.ftruncate(self._shared_fd, mmap.PAGESIZE)
            self._shared = mmap.mmap(self._shared_fd, mmap.PAGESIZE)
            self._shared[_LISTENING] = self._eager  # a sink wants every record as it is signed
        self._start_process()
        self._thread = threading.Thread(target=self._watch, name="warden-record-signer", daemon=True)
        self._thread.start()
        _live.add(self)
        atexit.register(self.close)

    # -- the hot path ---------------------------------------------------------------------

    def append(
        self, session_id: str, session_json: bytes, records: Sequence[tuple[str, bytes]], *, keep_signed: bool = False
    ) -> int:
        """Spool records (kind, canonical payload bytes) of one session with one ``os.write``;
        return the index of the last. The records are on the spool when this returns. With
        ``keep_signed`` the last one's signed line is kept for ``signed_line``.

        Waits while ``max_pending`` records are unsigned (checked before the spool lock is taken,
        so callers appending at the same moment may pass it by one append each). Raises SigningError if the signer is
        closed or its spool cannot be written (nothing is then on record: the call must not run).
        """
        now = time.time_ns()
        length = len(session_json)
        if len(records) == 1:
            kind, payload_json = records[0]
            data = b"%d,%s,%d:%s%s\n" % (now, kind.encode("ascii"), length, session_json, payload_json)
        else:
            data = b"".join(
                [
                    b"%d,%s,%d:%s%s\n" % (now, kind.encode("ascii"), length, session_json, payload_json)
                    for kind, payload_json in records
                ]
            )
        if self._appended - self._signed >= self._max_pending and self._refresh() >= self._max_pending:
            self._wait_for_room()
        with self._lock:
            if self._error is not None or self._closed:
                raise SigningError(self._error or "the signer is closed; records can no longer be signed")
            last = self._appended + len(records) - 1
            if keep_signed:  # before the write: the line may be signed and read back at once
                with self._reading:
                    self._wanted[last] = None
            try:
                written = os.write(self._fd, data)  # under the lock: spool order is signing order
                if written != len(data):
                    write_all(self._fd, data[written:])
                if self._fsync:
                    os.fsync(self._fd)
            except OSError as exc:
                # A partial line may be on the spool now: refuse everything after it.
                self._error = f"cannot write the record spool {self.spool_path}: {exc}"
                self._wanted.pop(last, None)
                raise SigningError(self._error) from exc
            shared = self._shared
            if shared is None or shared[_ASLEEP]:
                if shared is not None:
                    shared[_ASLEEP] = 0  # one ring wakes it
                self._rings += 1
                try:
                    os.write(self._bell, b"!")
                except OSError:  # a full pipe: the bell rings already; a dead signer: the watcher restarts it
                    pass
            self._appended = last + 1
            return last

    def _wait_for_room(self) -> None:
        with self._progress:
            self._listen(1)
            try:
                while self._refresh() >= self._max_pending and self._error is None and not self._closed:
                    self._progress.wait(_RECHECK)
            finally:
                self._listen(-1)

    def _refresh(self) -> int:
        """Take the signed count from the shared page; return how many records are unsigned."""
        if self._shared is not None:
            base = self._base  # before the page: a rotation zeroes the page before it moves the base
            self._signed = max(self._signed, base + _COUNT.unpack_from(self._shared, _SIGNED)[0])
        return self._appended - self._signed

    def _listen(self, change: int) -> None:
        """Count a thread waiting for progress (under ``_progress``): the signer reports while any does."""
        self._listeners += change
        if self._shared is not None and not self._eager:
            self._shared[_LISTENING] = self._listeners > 0
            with self._fence:  # a full barrier: the flag is set before the count is read
                pass

    # -- waiting for signatures -------------------------------------------------------------

    def signed_line(self, index: int) -> bytes:
        """Wait until entry ``index`` (appended with ``keep_signed``) is signed; return its line."""
        self.wait_for(index + 1)
        self._read_log()
        with self._reading:
            line = self._wanted.pop(index)
        assert line is not None
        return line

    def wait_for(self, count: int, timeout: float | None = None) -> bool:
        """Wait until the first ``count`` entries are signed; False if ``timeout`` passed first.
        Raises SigningError if signing failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._progress:
            self._listen(1)
            try:
                # The recheck only bounds a report lost to memory ordering between the processes.
                while self._signed < count and self._error is None:
                    self._refresh()
                    if self._signed >= count:
                        break
                    remaining = _RECHECK if deadline is None else min(_RECHECK, deadline - time.monotonic())
                    if remaining <= 0:
                        return False
                    self._progress.wait(remaining)
            finally:
                self._listen(-1)
            if self._error is not None and self._signed < count:
                raise SigningError(self._error)
            return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record appended so far is signed, in the log, and delivered."""
        with self._lock:
            target = self._appended
        if not self.wait_for(target, timeout):
            return False
        if self._deliver is not None:
            self._read_log()
        return True

    def close(self) -> None:
        """Flush, stop the signer process, and remove the spool (everything on it is signed)."""
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
                os.close(self._bell)  # end of file: the signer process finishes and exits
            self._thread.join()
            if self._deliver is not None:
                self._read_log()
            if complete and self._error is None:
                self.spool_path.unlink(missing_ok=True)
            os.close(self._fd)  # releases the flock: an unsigned remainder is left for recovery
            if self._shared is not None:
                shared, self._shared = self._shared, None  # stats() after close reads the last counts
                shared.close()
                os.close(self._shared_fd)
            with self._reading:
                os.close(self._log_reader)
                self._log_reader = -1

    def stats(self) -> dict[str, Any]:
        with self._progress:
            self._refresh()
            return {
                "appended": self._appended,
                "signed": self._signed,
                "pending": self._appended - self._signed,
                "spool": str(self.spool_path),
                "log": str(self.log_path),
                "error": self._error,
                "signer_pid": self._process.pid if self._process else None,
                "restarts": self._restarts,
                "rotations": self._rotations,
                "rings": self._rings,
                "reports": self._reports,
            }

    # -- reading signed lines back ------------------------------------------------------------

    def _read_log(self) -> None:
        """Read the lines the signer process appended since the last call: deliver them and
        keep those ``signed_line`` waits for."""
        with self._reading:
            if self._log_reader < 0:
                return  # closed: everything was read
            data = self._partial
            while chunk := os.read(self._log_reader, 1 << 20):
                data += chunk
            lines = data.split(b"\n")
            self._partial = lines.pop()
            self._log_bytes += len(data) - len(self._partial)
            first = self._delivered
            self._delivered += len(lines)
            wanted, deliver = self._wanted, self._deliver
            if wanted:
                for index in [i for i in wanted if first <= i < self._delivered]:
                    wanted[index] = lines[index - first]
            if deliver is not None:
                last = self._last if self._rotate_bytes is not None else None
                for line in lines:
                    session_id = session_of(line)
                    if last is not None:
                        last[session_id] = line
                    deliver(session_id, line)

    # -- segments -------------------------------------------------------------------------------

    def _maybe_rotate(self) -> None:
        """Start a new segment once the log passed ``rotate_bytes`` and everything appended is
        signed and delivered to the sink (the watcher thread, which follows the signer, calls it).

        Appends wait meanwhile. The order makes every crash point safe (docs/signed-records.md):
        1. a new spool whose header carries every session's chain head, and its empty log,
           fsynced; 2. the old signer process stopped (it has nothing left to sign); 3. the new
        signer started; 4. the old spool removed, then the old log (all of it was delivered).
        """
        if self._rotate_bytes is None or self._log_bytes < self._rotate_bytes:
            return
        with self._lock:
            if self._closed or self._error is not None:
                return
            deadline = time.monotonic() + _ROTATE_WAIT
            while True:  # no append can come in: the signer catches up with at most max_pending
                self._refresh()
                if self._signed >= self._appended:
                    self._read_log()
                    if self._delivered >= self._appended and not self._partial:
                        break
                process = self._process
                if self._shared is None or time.monotonic() > deadline or (process and process.poll() is not None):
                    return  # try again after a later report
                time.sleep(0.002)
            old_spool, old_log, old_fd, old_process = self.spool_path, self.log_path, self._fd, self._process
            spool_path, log_path, fd = open_segment(self._directory, self._identity_name, self._key_id,
                                                    chain_heads(self._last))
            # A crash from here on leaves two spools: the old one is fully signed (its signer
            # process or recovery removes it, signing nothing), the new one continues the chains.
            os.close(self._bell)  # end of file: the old signer fsyncs its log and exits
            assert old_process is not None
            old_process.wait()
            if self._shared is not None:
                _COUNT.pack_into(self._shared, _SIGNED, 0)  # before the base moves (``_refresh``)
            with self._reading:
                os.close(self._log_reader)
                self._log_reader = os.open(log_path, os.O_RDONLY | os.O_CLOEXEC)
                self._log_bytes = 0
            self._base = self._appended
            self.spool_path, self.log_path, self._fd = spool_path, log_path, fd
            try:
                self._start_process()
            except OSError as exc:
                self._fail(f"cannot start the signer process: {exc}")
                return
            old_spool.unlink()  # still locked by us: no recovery is reading it
            fsync_dir(self._directory)
            os.close(old_fd)
            old_log.unlink()  # a crash before this leaves a complete, delivered log behind: harmless
            self._rotations += 1

    def _forget_after_fork(self) -> None:
        # A forked child shares the spool's open file (and its flock): it must not append.
        self._closed = True
        self._error = "a forked process cannot use its parent's background signer; create a new ActionSigner"
        atexit.unregister(self.close)
        for fd in (self._bell, self._fd, self._log_reader):
            try:
                os.close(fd)
            except OSError:
                pass


def _forget_all_after_fork() -> None:
    for signing in list(_live):
        signing._forget_after_fork()


os.register_at_fork(after_in_child=_forget_all_after_fork)

__all__ = [
    "DEFAULT_MAX_PENDING",
    "DEFAULT_ROTATE_BYTES",
    "MAX_RESTARTS",
    "SPOOL_FORMAT",
    "BackgroundSigning",
    "RecoveredSpool",
    "recover_spool",
    "record_id_for",
    "time_of",
]
