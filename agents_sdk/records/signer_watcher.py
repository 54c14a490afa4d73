"""The signer process of a background signer, and the thread that watches it.

``SignerWatcher`` is the part of ``agents_sdk.records.background.BackgroundSigning`` that
starts the signer process (``agents_sdk.records.signer_process``), hands it the key, follows
its reports on a thread (how many records are in the log, or an error) and starts another if
it dies before ``close``: up to ``MAX_RESTARTS`` times, then background signing fails
(``SigningError`` on the next append). The spool, the log and the hot path stay in
``background``.
"""

from __future__ import annotations

import logging
import mmap
import os
import subprocess
import sys
import threading
from pathlib import Path

from agents_sdk.records.spool import write_all

logger = logging.getLogger("agents_sdk.records.background")  # the name operators already filter on

MAX_RESTARTS = 5
"""Signer processes started again after one died, before the signer gives up (SigningError)."""
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding agents_sdk

__all__ = ["MAX_RESTARTS", "SignerWatcher"]


class SignerWatcher:
    """Starts the signer process and watches it (a base of ``BackgroundSigning``, whose
    state these methods share; see the module docstring)."""

    # Set by BackgroundSigning.__init__.
    spool_path: Path
    log_path: Path
    _seed: bytes
    _shared: mmap.mmap | None
    _shared_fd: int
    _process: subprocess.Popen[bytes] | None
    _bell: int
    _lock: threading.Lock
    _progress: threading.Condition
    _reading: threading.Lock
    _log_reader: int
    _partial: bytes
    _closed: bool
    _error: str | None
    _restarts: int
    _reports: int
    _signed: int
    _base: int
    _eager: bool

    def _read_log(self) -> None:
        raise NotImplementedError  # BackgroundSigning's

    def _maybe_rotate(self) -> None:
        raise NotImplementedError  # BackgroundSigning's

    def _start_process(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (_PACKAGE_ROOT, env.get("PYTHONPATH"))))
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agents_sdk.records.signer_process",
                str(self.spool_path),
                str(self.log_path),
                str(self._shared_fd),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            bufsize=0,
            pass_fds=(self._shared_fd,) if self._shared_fd >= 0 else (),
        )
        assert process.stdin is not None
        bell = os.dup(process.stdin.fileno())  # raw writes; the Popen's own file object is closed now
        process.stdin.close()
        write_all(bell, self._seed)
        os.set_blocking(bell, False)
        self._process, self._bell = process, bell

    def _watch(self) -> None:
        """Follow the signer process's reports; start another if it dies before ``close``."""
        while True:
            process = self._process
            assert process is not None and process.stdout is not None
            fd, pending = process.stdout.fileno(), b""
            while chunk := os.read(fd, 4096):
                *lines, pending = (pending + chunk).split(b"\n")
                if process is not self._process:
                    continue  # a segment's signer stopped by a rotation: its counts are not ours
                for line in lines:
                    if line.startswith(b"E "):
                        self._report(line)
                if lines:
                    self._report(lines[-1])
                    self._maybe_rotate()
            process.stdout.close()
            code = process.wait()
            with self._lock:
                if self._closed or self._error is not None:
                    return
                if process is not self._process:
                    continue  # rotated: follow the new segment's signer
                self._restarts += 1
                if self._restarts > MAX_RESTARTS:
                    self._fail(f"the signer process died {self._restarts} times (last exit status {code})")
                    return
                logger.warning("the record signer process exited with status %s; starting another", code)
                os.close(self._bell)
                with self._reading:  # a line it died writing is cut and written again by the next one
                    os.lseek(self._log_reader, -len(self._partial), os.SEEK_CUR)
                    self._partial = b""
                try:
                    self._start_process()
                except OSError as exc:
                    self._fail(f"cannot start the signer process: {exc}")
                    return

    def _report(self, line: bytes) -> None:
        if line.startswith(b"E "):
            if self._error is None:
                self._fail("signing records failed: " + line[2:].decode("utf-8", "replace"))
        elif line:
            with self._progress:
                self._reports += 1
                self._signed = max(self._signed, self._base + int(line))
                self._progress.notify_all()
            if self._eager:
                self._read_log()

    def _fail(self, message: str) -> None:
        logger.error("the background record signer failed: %s", message)
        with self._progress:
            self._error = message
            self._progress.notify_all()
