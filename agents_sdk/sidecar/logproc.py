"""Decision-log uploads from a child process, so that no upload ever holds the deciding
process's GIL (the `warden sidecar` command uses this; an embedded ``Sidecar`` uploads
from a thread unless built with ``decision_log_process=True``).

The deciding thread only appends each event, already encoded at decision time, to a
bounded queue (``log_encoded``: no syscall, no wait). Every ``TICK`` a writer thread
writes what is queued to the pipe in one write (the kernel's copy, a few hundred µs for a
tenth of a second of decisions, runs without the GIL on that thread). The child reads the
pipe ten times a second and hands the events to a ``DecisionLogShipper``, which batches,
gzips and uploads them as OPA does, on the child's own GIL and core.

Frames on the pipe: a 4-byte little-endian length, then that many bytes. The first frame
is the child's configuration (JSON: service, credentials, reporting; never on the command
line, where any local user could read a token); a frame of length 0 asks for a flush. The
child reports its counters as JSON lines on a second pipe, which the writer thread reads.

Nothing is lost silently: a full parent queue drops its oldest event and counts it (never
blocks a decision); the child's queue counts its own drops as the in-thread shipper does;
if the child dies, every event it had received and not uploaded is counted as dropped and
a new child is started. The child runs in its own process group (a Ctrl-C or a signal to the
sidecar's process group does not reach it) and ignores SIGINT and SIGTERM: it flushes and
exits when the pipe closes, which ``stop()`` does, and which the kernel does if the
sidecar dies, however it dies. It runs ``CHILD_NICENESS`` nicer than the sidecar, so that
where both want one core the decisions get it first. The counters are served at the
sidecar's ``GET /metrics`` (``counters()``, which never waits on a flush in progress).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from agents_sdk.sidecar.config import DecisionLogConfig, Service
from agents_sdk.sidecar.uploads import _ENCODE, DecisionLogShipper, UploadError

logger = logging.getLogger(__name__)

PIPE_BYTES = 1 << 20
"""The events pipe's capacity where the kernel allows it (about 0.3 s of 5,000 decisions/s)."""

WRITE_BYTES = 1 << 20
"""At most this much is joined for one write: bounds a partly written chunk."""

CHILD_POLL = 0.1
"""Seconds between the child's reads of the pipe: it wakes ten times a second, not per event."""

TICK = 0.1
"""Seconds between the writer thread's writes to the pipe."""

CHILD_NICENESS = 5
"""Added to the child's nice value: where the uploads and the decisions want the same core,
the scheduler gives it to the decisions first (about 3 to 1), and the uploads catch up in
the idle time between them."""

_FLUSH = (0).to_bytes(4, "little")
_LENGTH = struct.Struct("<I")  # a frame's length


class DecisionLogProcess:
    """The parent's side: the interface of ``DecisionLogShipper`` the sidecar uses
    (``log_encoded``, ``drop``, ``flush``, ``start``, ``stop``, ``uploaded``, ``dropped``,
    ``pending``, ``last_error``), with the uploads in a child process."""

    def __init__(self, service: Service, config: DecisionLogConfig):
        self.service = service
        self.config = config
        self._lock = threading.Lock()  # the queue: log_encoded (loop thread) against the writers
        self._write_lock = threading.RLock()  # one writer at a time, so frames are never interleaved
        self._status_lock = threading.Lock()
        self._frames: deque[bytes] = deque()  # whole frames not yet written
        self._partial = b""  # the unwritten end of a chunk the pipe took only part of
        self._dropped_here = self._dropped_warned = 0
        self._lost = 0  # received by a child that died before uploading them
        self._written = 0  # events written to the current child
        self._child: subprocess.Popen[bytes] | None = None
        self._events_fd = -1
        self._status_fd = -1
        self._status_buffer = b""
        self._status: dict[str, Any] = {}
        self._flushes = 0
        self._flush_frames = 0  # flush markers in _frames (not events)
        self._wake = threading.Event()  # set by stop()
        self._writer: threading.Thread | None = None
        self._uploaded_before = self._dropped_before = 0  # counted by children that died

    # -- the deciding thread ------------------------------------------------------------

    def log(self, event: dict[str, Any]) -> None:
        """Encode and queue one event (the sidecar encodes its own: ``log_encoded``)."""
        try:
            encoded = _ENCODE(event).encode("utf-8")
        except (TypeError, ValueError) as exc:
            self.drop(event.get("decision_id"), exc)
            return
        self.log_encoded(encoded)

    def log_encoded(self, encoded: bytes) -> None:
        """Queue one encoded event: an append, never a wait (the oldest goes when full)."""
        frame = len(encoded).to_bytes(4, "little") + encoded
        with self._lock:
            if len(self._frames) >= self.config.buffer_size_limit_events:
                if self._frames.popleft() is _FLUSH:
                    self._flush_frames -= 1
                else:
                    self._dropped_here += 1
            self._frames.append(frame)

    def drop(self, decision_id: Any, problem: Exception) -> None:
        logger.warning("decision %s has no JSON form for the log; dropped: %s", decision_id, problem)
        with self._lock:
            self._dropped_here += 1

    # -- counters -------------------------------------------------------------------------

    @property
    def uploaded(self) -> int:
        self._read_status()
        return int(self._status.get("uploaded", 0)) + self._uploaded_before

    @property
    def dropped(self) -> int:
        self._read_status()
        return self._dropped_here + self._lost + int(self._status.get("dropped", 0)) + self._dropped_before

    @property
    def pending(self) -> int:
        self._read_status()
        in_pipe = self._written - int(self._status.get("received", 0))
        with self._lock:  # a partial chunk's events are in in_pipe
            queued = len(self._frames) - self._flush_frames
        return queued + in_pipe + int(self._status.get("pending", 0))

    def counters(self) -> dict[str, int]:
        """``uploaded``, ``dropped`` and ``pending`` as the properties give them, from the
        child's latest report; never waits for a lock a flush holds (the event loop asks)."""
        self._read_status(block=False)
        status = self._status
        with self._lock:
            queued = len(self._frames) - self._flush_frames
            dropped_here = self._dropped_here
        return {
            "uploaded": int(status.get("uploaded", 0)) + self._uploaded_before,
            "dropped": dropped_here + self._lost + int(status.get("dropped", 0)) + self._dropped_before,
            "pending": queued + self._written - int(status.get("received", 0)) + int(status.get("pending", 0)),
        }

    @property
    def last_error(self) -> UploadError | None:
        self._read_status()
        message = self._status.get("error")
        return UploadError(message, self._status.get("http_code")) if message else None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._spawn()
        self._writer = threading.Thread(target=self._run, name="warden-decision-log-pipe", daemon=True)
        self._writer.start()

    def _run(self) -> None:
        # Every TICK: write what is queued (the write's copy runs without the GIL, on this
        # thread: a 70 KiB write costs a few hundred µs of kernel time, which the deciding
        # thread must not wait for), read the child's counters, replace a dead child.
        while not self._wake.wait(TICK):
            self.tick()

    def tick(self) -> None:
        """One round of the writer thread."""
        if self._dropped_here > self._dropped_warned:
            logger.warning("%d decision-log events dropped in the sidecar (%d in all): the queue of %d events "
                           "to the decision-log process was full", self._dropped_here - self._dropped_warned,
                           self._dropped_here, self.config.buffer_size_limit_events)
            self._dropped_warned = self._dropped_here
        child = self._child
        if child is not None and child.poll() is not None:
            self._child_died(child.returncode)
        self._write(block=True, deadline=time.monotonic() + TICK)
        self._read_status()

    def flush(self, timeout: float = 30.0) -> bool:
        """Upload everything queued now; True if the child's queue was emptied."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._frames.append(_FLUSH)
            self._flush_frames += 1
            self._flushes += 1
            wanted = self._flushes
        if not self._write(block=True, deadline=deadline):
            return False
        while time.monotonic() < deadline:
            self._read_status(wait=min(0.5, max(0.0, deadline - time.monotonic())))
            if int(self._status.get("flushed", 0)) >= wanted:
                return bool(self._status.get("flush_ok"))
            if self._child is None or self._child.poll() is not None:
                return False
        return False

    def stop(self, timeout: float = 5.0) -> None:
        """Hand the child what is queued, close the pipe (the child flushes, one attempt
        per chunk) and wait for it; what it could not upload in ``timeout`` is dropped."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        if self._writer is not None:
            self._writer.join(timeout)
        child = self._child
        if child is None:
            return
        self._write(block=True, deadline=deadline)
        with self._lock:
            unwritten = len(self._frames) - self._flush_frames  # a partial chunk's: below
            self._flush_frames = 0
            self._frames.clear()
            self._partial = b""
            self._dropped_here += unwritten
        os.close(self._events_fd)
        self._events_fd = -1
        try:
            child.wait(max(0.1, deadline - time.monotonic()) + 1.0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        self._read_status(until_eof=True)
        with self._status_lock:
            os.close(self._status_fd)
            self._status_fd = -1
        self._count_lost()  # what the child neither uploaded nor counted (it died, or ran out of time)

    # -- internals ------------------------------------------------------------------------

    def _spawn(self) -> None:
        events_read, events_write = os.pipe()
        status_read, status_write = os.pipe()
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(events_write, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        root = str(Path(__file__).resolve().parents[2])  # the directory holding agents_sdk
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(events_read), str(status_write)],
                pass_fds=(events_read, status_write), env=env, stdin=subprocess.DEVNULL, close_fds=True,
                # Its own process group, so a Ctrl-C or a signal to the sidecar's group does not
                # reach it; not its own session: a session is its own scheduling autogroup where
                # the kernel has them (sched_autogroup_enabled, on by default in most distributions),
                # autogroups share the CPU equally whatever their members' nice values, and the
                # child's CHILD_NICENESS would not count against the sidecar (5,000 decisions/s:
                # p99 1.3-3.6 ms in its own session, seven runs; 0.8-1.6 ms in the sidecar's, five).
                # In a non-root cpu cgroup there is no autogroup: the child inherits the cgroup.
                process_group=0,
            )
        finally:
            os.close(events_read)
            os.close(status_write)
        os.set_blocking(events_write, False)
        os.set_blocking(status_read, False)
        self._events_fd, self._status_fd = events_write, status_read
        self._written = self._flushes = 0  # the new child counts from zero
        self._status, self._status_buffer = {}, b""
        spec = json.dumps({"service": dataclasses.asdict(self.service), "config": dataclasses.asdict(self.config)})
        body = spec.encode("utf-8")
        with self._lock:
            self._partial = b""
            self._frames.appendleft(len(body).to_bytes(4, "little") + body)
            self._written -= 1  # the spec is no event
        self._write(block=False)

    def _child_died(self, code: int | None) -> None:
        logger.warning("the decision-log process exited (code %s); starting another", code)
        with self._write_lock:
            self._replace_child()

    def _replace_child(self) -> None:
        self._read_status(until_eof=True)
        self._count_lost()
        self._uploaded_before += int(self._status.get("uploaded", 0))
        self._dropped_before += int(self._status.get("dropped", 0))
        with contextlib.suppress(OSError):
            os.close(self._events_fd)
        with contextlib.suppress(OSError):
            os.close(self._status_fd)
        with self._lock:
            self._partial = b""  # its events are counted in _written, so lost above
        self._spawn()

    def _count_lost(self) -> None:
        # What the child received (or was sent) and neither uploaded nor counted as dropped.
        status = self._status
        lost = self._written - int(status.get("uploaded", 0)) - int(status.get("dropped", 0))
        self._lost += max(0, lost)
        self._written = int(status.get("uploaded", 0)) + int(status.get("dropped", 0))

    def _write(self, *, block: bool, deadline: float = 0.0) -> bool:
        """Write queued frames to the pipe; with ``block``, until all are written or the
        deadline passes (True if all were). Without ``block`` (the loop thread), it never
        waits, not even for another writer."""
        if not self._write_lock.acquire(blocking=block):
            return False
        try:
            return self._write_locked(block, deadline)
        finally:
            self._write_lock.release()

    def _write_locked(self, block: bool, deadline: float) -> bool:
        while True:
            with self._lock:
                chunk = self._partial
                if not chunk and self._frames:
                    parts, size = [], 0
                    while self._frames and size < WRITE_BYTES:
                        frame = self._frames.popleft()
                        parts.append(frame)
                        size += len(frame)
                        if frame is _FLUSH:
                            self._flush_frames -= 1
                        else:
                            self._written += 1
                    chunk = b"".join(parts)
                self._partial = b""
            if not chunk:
                return True
            try:
                sent = os.write(self._events_fd, chunk)
            except BlockingIOError:
                sent = 0
            except OSError:  # the child is gone: tick() counts its loss and starts another one
                sent = 0
                block = False
            if sent < len(chunk):
                with self._lock:
                    self._partial = chunk[sent:]
                if not block or time.monotonic() >= deadline:
                    return False
                select.select([], [self._events_fd], [], max(0.0, min(0.1, deadline - time.monotonic())))

    def _read_status(self, *, wait: float = 0.0, until_eof: bool = False, block: bool = True) -> None:
        if not self._status_lock.acquire(blocking=block):
            return  # the loop thread never waits (a flush may be waiting for its answer)
        try:
            self._read_status_locked(wait, until_eof)
        finally:
            self._status_lock.release()

    def _read_status_locked(self, wait: float, until_eof: bool) -> None:
        fd = self._status_fd
        if fd < 0:
            return
        while True:
            if wait or until_eof:
                ready, _, _ = select.select([fd], [], [], 1.0 if until_eof else wait)
                if not ready:
                    break
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                break
            if not data:
                break
            self._status_buffer += data
            wait = 0.0
        if b"\n" in self._status_buffer:
            lines = self._status_buffer.split(b"\n")
            self._status_buffer = lines[-1]
            with contextlib.suppress(ValueError):
                self._status = json.loads(lines[-2])


# -- the child ----------------------------------------------------------------------------


# Run with -c, not -m: this module is already imported with the package.
_CHILD = "import sys; from agents_sdk.sidecar.logproc import child; sys.exit(child(int(sys.argv[1]), int(sys.argv[2])))"


def child(events_fd: int, status_fd: int) -> int:
    """The child process: read events from ``events_fd``, upload them, report on ``status_fd``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICENESS)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.set_blocking(events_fd, False)
    buffer = bytearray()
    shipper: DecisionLogShipper | None = None
    received = flushed = 0
    flush_ok = True
    last_report = 0.0

    def report(final: bool = False) -> None:
        assert shipper is not None
        error = shipper.last_error
        line = json.dumps({"received": received, "uploaded": shipper.uploaded, "dropped": shipper.dropped,
                           "pending": shipper.pending, "flushed": flushed, "flush_ok": flush_ok,
                           "error": error.message if error else None, "http_code": error.http_code if error else None})
        if final:
            os.set_blocking(status_fd, True)
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(status_fd, line.encode("utf-8") + b"\n")  # the parent needs the last line only

    eof = False
    while not eof:
        select.select([events_fd], [], [], 1.0)
        while True:
            try:
                data = os.read(events_fd, 4 << 20)
            except BlockingIOError:
                break
            if not data:
                eof = True
                break
            buffer += data
        at, end, flush_now = 0, len(buffer), False
        events: list[bytes] = []
        # One copy per event (out of a view of the buffer), queued all at once: the loop runs
        # once per decision, so its Python is the child's cost per logged decision.
        with memoryview(buffer) as view:
            while end - at >= 4:
                (size,) = _LENGTH.unpack_from(buffer, at)
                if end - at - 4 < size:
                    break
                body = view[at + 4:at + 4 + size].tobytes()
                at += 4 + size
                if shipper is None:
                    spec = json.loads(body)
                    shipper = DecisionLogShipper(Service(**spec["service"]), DecisionLogConfig(**spec["config"]))
                    shipper.start()
                elif size == 0:
                    flush_now = True
                else:
                    events.append(body)
        del buffer[:at]
        if shipper is None:
            continue
        if events:
            shipper.log_many(events)
            received += len(events)
        if shipper.pending >= shipper.config.buffer_size_limit_events // 2:
            # Upload a half-full queue now rather than at the next min..max_delay round: a busy
            # second must not fill the bound and drop events while the control plane is up.
            shipper._wake.set()
        if flush_now:
            flush_ok = shipper.flush()
            flushed += 1
        now = time.monotonic()
        if flush_now or now - last_report >= 0.2:
            report()
            last_report = now
        if not eof:
            time.sleep(CHILD_POLL)  # batch: the parent writes every TICK
    if shipper is not None:
        shipper.stop()
        report(final=True)
    return 0

