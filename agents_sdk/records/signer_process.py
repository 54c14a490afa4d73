"""The signer process: tails an agent's record spool, signs each entry, appends it to the log.

``python -m agents_sdk.records.signer_process SPOOL LOG``, started by ``BackgroundSigning``
(never by hand). It runs beside the agent so that no signature ever takes the agent's GIL.

- stdin (from the agent): the 32-byte Ed25519 private key, then a byte per ring of the
  doorbell: the agent rings after a spool write when this process has set the shared
  ``asleep`` byte (a memfd page, the third argument: -1 to be rung after every write).
  End of file: the agent closed the signer, or died.
- stdout (to the agent): the number of spool entries the log holds, as a decimal line, after
  each batch signed while the agent listens (it sets a byte of the shared page while a thread
  waits, or always when a sink takes the records); ``E <message>`` before exiting on an error.
  The count is also on the shared page after every batch.

It first takes the log's ``flock`` and continues it from its last complete line (a signer
before it may have died mid-write), so a restarted signer and ``recover_spool`` share one
logic. When the agent is gone it signs the rest of the spool, fsyncs the log and, once it can
take the spool's ``flock`` (the agent's lock died with it), removes the spool: an agent killed
mid-run leaves a complete log without anyone running recovery.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import select
import signal
import struct
import sys
import threading

from agents_sdk.records.spool import Chains, SpoolError, ed25519_signer, parse_entry, read_header, write_all

_READ = 1 << 20
_BATCH = 2048
_NAP = 0.05  # entries per log write and progress report: bounds a waiting caller's latency


class _Tail:
    def __init__(self, spool_path: str, log_path: str, seed: bytes) -> None:
        self.spool_path = spool_path
        self.log_fd = os.open(log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.log_fd, fcntl.LOCK_EX)  # a signer before this one may still be exiting
        self.spool_fd = os.open(spool_path, os.O_RDONLY | os.O_CLOEXEC)
        buffer = b""
        while b"\n" not in buffer:  # the agent wrote and fsynced the header before starting us
            chunk = os.read(self.spool_fd, 4096)
            if not chunk:
                raise SpoolError("the spool has no header")
            buffer += chunk
        header, self.buffer = buffer.split(b"\n", 1)
        head = read_header(header)
        sign, public = ed25519_signer(seed)
        if hashlib.sha256(public).hexdigest() != head.key_id:
            raise SpoolError(f"the key given is not the spool's key {head.key_id}")
        self.chains = Chains(sign, head.agent, head.key_id, head.salt, head.heads)
        self.signed = self.chains.resume(self.log_fd)
        self.skip = self.signed  # spool entries the log already holds
        self.index = 0  # spool entries seen

    def sign_available(self) -> int:
        """Sign the complete entries read so far; return how many."""
        lines = self.buffer.split(b"\n")
        self.buffer = lines.pop()  # an entry being written, or b""
        if self.skip:
            skipped = min(self.skip, len(lines))
            del lines[:skipped]
            self.skip -= skipped
            self.index += skipped
        count = 0
        seal = self.chains.seal
        for start in range(0, len(lines), _BATCH):
            out = []
            for raw in lines[start : start + _BATCH]:
                entry = parse_entry(raw, strict=False)
                if entry is None:
                    raise SpoolError(f"spool entry {self.index} is garbled")
                out.append(seal(self.index, *entry))
                out.append(b"\n")
                self.index += 1
            write_all(self.log_fd, b"".join(out))
            count += len(out) // 2
            self.signed += len(out) // 2
            publish(self.signed)
        return count

    def read_spool(self) -> bool:
        """Read what the agent appended; False at the end of the spool."""
        chunk = os.read(self.spool_fd, _READ)
        if chunk:
            self.buffer += chunk
        return bool(chunk)

    def finish(self) -> None:
        """The agent is gone: everything it appended is on the spool. Sign it, fsync, remove
        the spool once its lock is free (not while the agent that closed us still holds it)."""
        while self.read_spool():
            pass
        self.sign_available()  # a torn last entry (the agent died mid-write) stays unsigned
        os.fsync(self.log_fd)
        try:
            fcntl.flock(self.spool_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # the agent is closing us: it removes the spool itself
        if self.skip == 0:
            os.unlink(self.spool_path)


_stdout_open = True
_shared: mmap.mmap | None = None  # the page shared with the agent (see BackgroundSigning)
_fence = threading.Lock()


def publish(signed: int) -> None:
    """Put the count of signed records on the shared page; report it if the agent listens."""
    if _shared is None:
        report(b"%d\n" % signed)
        return
    struct.pack_into("<Q", _shared, 8, signed)
    with _fence:  # a full barrier: the count is stored before the flag is read
        pass
    if _shared[1]:
        report(b"%d\n" % signed)


def report(message: bytes) -> None:
    global _stdout_open
    if _stdout_open:
        try:
            write_all(1, message)
        except BrokenPipeError:  # the agent died: keep signing, nobody listens
            _stdout_open = False


def main(argv: list[str]) -> int:
    # The agent decides when signing stops: ^C or a TERM sent to its process group must not
    # leave records unsigned (SIGKILL still does; recovery covers it).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    global _shared
    spool_path, log_path, shared_fd = argv
    _shared = mmap.mmap(int(shared_fd), mmap.PAGESIZE) if int(shared_fd) >= 0 else None
    asleep = _shared
    seed = b""
    while len(seed) < 32:
        chunk = os.read(0, 32 - len(seed))
        if not chunk:
            return 0  # the agent went away before handing over its key: recovery signs the spool
        seed += chunk
    try:
        tail = _Tail(spool_path, log_path, seed)
        if _shared is not None:
            struct.pack_into("<Q", _shared, 8, tail.signed)
        report(b"%d\n" % tail.signed)
        while True:
            while tail.read_spool():
                if len(tail.buffer) >= _READ:
                    tail.sign_available()
            if tail.sign_available():
                continue
            if asleep is not None:
                asleep[0] = 1  # "ring me"; then look once more, or an append just before it is missed
                if tail.read_spool():
                    asleep[0] = 0
                    continue
            # The doorbell: the agent appended (or is gone). The timeout only bounds a ring lost
            # to memory ordering between the two processes; it never loses a record.
            if select.select([0], [], [], _NAP)[0] and not os.read(0, 65536):
                tail.finish()
                return 0
            if asleep is not None:
                asleep[0] = 0
    except Exception as exc:  # noqa: BLE001 - the agent surfaces it to every caller
        report(b"E " + f"{type(exc).__name__}: {exc}".replace("\n", " ").encode("utf-8", "replace") + b"\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
