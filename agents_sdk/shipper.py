"""Ship signed action records to the control plane, surviving outages and crashes.

    shipper = Shipper(identity, "https://warden.example.com", spool_dir="/var/lib/agent/spool")
    shipper.start()
    signer = ActionSigner(identity, sink=shipper.submit, keep_log=False)
    ...
    shipper.close(timeout=10)   # flush what is spooled, then stop

Every record handed to ``submit`` is appended to a spool file on local disk before
``submit`` returns; a background thread groups spool files into batches, posts them to
``POST /api/v1/audit/batches/`` signed with the agent's own key, and deletes a spool file
only after the control plane answered 202 (the batch is then durable on its side).
During an outage it retries with exponential backoff; on start it re-sends whatever an
earlier process left unacknowledged. The control plane stores each record id once, so a
batch sent twice (the 202 was lost) is harmless.

Spool layout: ``<spool_dir>/<sequence>.open`` receives records (one canonical JSON line
each); it is sealed by renaming it ``<sequence>.ready`` when it holds ``batch_size``
records or is older than ``flush_interval``; ready files are sent in sequence order, one
batch per file, so a session's records reach the control plane in the order they were
signed. A batch the control plane refuses as malformed (400) is renamed ``.rejected``
and counted, so it cannot block the records behind it.

Durability (``fsync``): ``"always"`` fsyncs each record before ``submit`` returns (a
power cut loses nothing, ~ one disk flush per record); ``"seal"`` (default) fsyncs a
file when it is sealed, so a process crash loses nothing (the data is in the page
cache) and a power cut can lose at most the records of the last ``flush_interval``;
``"never"`` leaves it to the operating system.

Bounds: memory holds no records (they go straight to disk); the spool holds at most
``max_spool_bytes``. A record that does not fit is refused: counted in
``stats()["refused"]`` and logged, never raised into the agent (set
``raise_when_full=True`` to raise ShipperFull instead).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import urllib3

from agents_sdk.errors import WardenError
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import canonical_json

logger = logging.getLogger(__name__)

BATCH_PATH = "/api/v1/audit/batches/"
FSYNC_POLICIES = ("always", "seal", "never")
GZIP_ABOVE = 4096


class ShipperFull(WardenError):
    """The spool has no room for the record (raised only with ``raise_when_full=True``)."""


def request_headers(identity: AgentIdentity, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The headers that authenticate an upload: the agent's Ed25519 signature over
    ``"<unix seconds>\\n<sha256 hex of the body as sent>"``."""
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    message = f"{stamp}\n{hashlib.sha256(body).hexdigest()}".encode("ascii")
    return {
        "X-Warden-Agent": identity.name,
        "X-Warden-Key-Id": identity.key_id,
        "X-Warden-Timestamp": str(stamp),
        "X-Warden-Signature": base64.b64encode(identity.sign(message)).decode("ascii"),
    }


def batch_body(lines: list[bytes]) -> bytes:
    """``{"records": [...]}`` from canonical JSON lines, without parsing them again."""
    return b'{"records":[' + b",".join(line.rstrip(b"\n") for line in lines) + b"]}"


class Shipper:
    """Spools signed records on disk and ships them in batches; see the module docstring."""

    def __init__(
        self,
        identity: AgentIdentity,
        base_url: str,
        spool_dir: str | os.PathLike[str],
        *,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        max_spool_bytes: int = 256 * 1024 * 1024,
        fsync: str = "seal",
        timeout: float = 30.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 60.0,
        raise_when_full: bool = False,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.identity = identity
        self.url = base_url.rstrip("/") + BATCH_PATH
        self.spool = Path(spool_dir)
        self.spool.mkdir(parents=True, exist_ok=True)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_spool_bytes = max_spool_bytes
        self.fsync = fsync
        self.timeout = timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.raise_when_full = raise_when_full

        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counts = {"spooled": 0, "sent": 0, "batches": 0, "refused": 0, "rejected": 0, "failures": 0}
        # One kept-alive connection (only the shipping thread sends). urllib3 retries a connect
        # that failed before anything was sent; every other failure is the spool's to retry
        # with backoff, so a batch is never sent twice by a retry of ours.
        self._http = urllib3.PoolManager(
            num_pools=1, maxsize=1, block=False,
            retries=urllib3.Retry(total=2, connect=2, read=0, status=0, other=0, redirect=False, raise_on_redirect=False),
            timeout=urllib3.Timeout(connect=timeout, read=timeout),  # per socket operation, as urllib's
        )
        self._last_error = ""
        # A crash can leave a half-written last line: seal what the last process left.
        self._sequence = 0
        self._spool_bytes = 0
        for path in sorted(self.spool.iterdir()):
            if path.suffix in (".open", ".ready", ".rejected"):
                self._spool_bytes += path.stat().st_size
                self._sequence = max(self._sequence, _sequence_of(path))
            if path.suffix == ".open":
                path.rename(path.with_suffix(".ready"))
        self._open_file = None
        self._open_path: Path | None = None
        self._open_count = 0
        self._open_since = 0.0

    # -- the agent's side ------------------------------------------------------------

    def submit(self, record: Mapping[str, Any]) -> None:
        """Append a signed record to the spool (use as ``ActionSigner(sink=shipper.submit)``)."""
        line = canonical_json(record) + b"\n"
        with self._lock:
            if self._spool_bytes + len(line) > self.max_spool_bytes:
                self._counts["refused"] += 1
                if self._counts["refused"] in (1, 10, 100) or self._counts["refused"] % 1000 == 0:
                    logger.warning("audit spool full (%s bytes): %s record(s) refused", self.max_spool_bytes,
                                   self._counts["refused"])
                if self.raise_when_full:
                    raise ShipperFull(f"the audit spool is full ({self.max_spool_bytes} bytes)")
                return
            if self._open_file is None:
                self._sequence += 1
                self._open_path = self.spool / f"{self._sequence:012d}.open"
                self._open_file = open(self._open_path, "ab")  # noqa: SIM115 - kept open across calls
                self._open_since = time.monotonic()
            self._open_file.write(line)
            if self.fsync == "always":
                self._open_file.flush()
                os.fsync(self._open_file.fileno())
            else:
                # Into the page cache now: a crash of this process after submit loses nothing.
                self._open_file.flush()
            self._open_count += 1
            self._spool_bytes += len(line)
            self._counts["spooled"] += 1
            if self._open_count >= self.batch_size:
                self._seal_locked()
                self._wake.set()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Shipper:
        """Start the background thread (sends what an earlier process left first)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="warden-audit-shipper", daemon=True)
            self._thread.start()
        return self

    def flush(self, timeout: float = 30.0) -> bool:
        """Seal the open spool file and wait until everything spooled was acknowledged.

        Returns True when the spool is empty, False if ``timeout`` passed first.
        """
        with self._lock:
            self._seal_locked()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._pending_files():
                return True
            self._wake.set()
            if self._thread is None:
                self._send_ready()
            time.sleep(0.02)
        return not self._pending_files()

    def close(self, timeout: float = 10.0) -> bool:
        """Flush (up to ``timeout``) and stop the thread; unsent records stay spooled for next time."""
        done = self.flush(timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._http.clear()
        return done

    def stats(self) -> dict[str, Any]:
        """Counters: spooled, sent, batches, refused (spool full), rejected (400), failures; pending files."""
        with self._lock:
            return {**self._counts, "pending_files": len(self._pending_files()), "spool_bytes": self._spool_bytes,
                    "last_error": self._last_error}

    # -- the background thread -------------------------------------------------------

    def _run(self) -> None:
        delay = 0.0
        while not self._stop.is_set():
            self._wake.wait(timeout=max(delay, min(self.flush_interval, 0.25)))
            self._wake.clear()
            with self._lock:
                if self._open_file is not None and time.monotonic() - self._open_since >= self.flush_interval:
                    self._seal_locked()
            if self._send_ready():
                delay = 0.0
            else:
                delay = min(self.backoff_max, max(self.backoff_initial, delay * 2)) * random.uniform(0.8, 1.2)

    def _send_ready(self) -> bool:
        """Send every sealed file in order; False after the first failure (to back off)."""
        for path in self._pending_files():
            if path.suffix != ".ready":
                continue
            if not self._send_file(path):
                return False
        return True

    def _send_file(self, path: Path) -> bool:
        try:
            lines = [line for line in path.read_bytes().splitlines(keepends=True) if line.strip()]
        except FileNotFoundError:
            return True
        complete = [line for line in lines if line.endswith(b"\n") and _is_json_object(line)]
        size = path.stat().st_size
        if not complete:
            self._forget(path, size)
            return True
        body = batch_body(complete)
        headers = {"Content-Type": "application/json"}
        if len(body) > GZIP_ABOVE:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        headers.update(request_headers(self.identity, body))
        try:
            response = self._http.request("POST", self.url, body=body, headers=headers, preload_content=False)
            try:
                status, answer = response.status, response.read(4096)
            finally:
                response.drain_conn()
                response.release_conn()
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            return self._failed(f"cannot reach {self.url}: {exc}")
        if status == 202:
            self._forget(path, size)
            with self._lock:
                self._counts["sent"] += len(complete)
                self._counts["batches"] += 1
            return True
        if status == 413 and len(complete) > 1:
            self._split(path, complete)
            return True
        if status in (400, 413):
            # The control plane will never accept these bytes: set them aside, keep shipping.
            path.rename(path.with_suffix(".rejected"))
            with self._lock:
                self._counts["rejected"] += len(complete)
            logger.error("audit batch %s refused (%s): %s", path.name, status, answer[:500].decode("utf-8", "replace"))
            return True
        return self._failed(f"{self.url} answered {status}: {answer[:300].decode('utf-8', 'replace')}")

    def _failed(self, message: str) -> bool:
        with self._lock:
            self._counts["failures"] += 1
            self._last_error = message
        logger.warning("audit shipping failed, will retry: %s", message)
        return False

    def _split(self, path: Path, lines: list[bytes]) -> None:
        """Replace a file the server found too large by two halves, in the same place in the order."""
        half = len(lines) // 2
        base = path.with_suffix("")
        first, second = Path(f"{base}a.ready"), Path(f"{base}b.ready")
        for target, part in ((first, lines[:half]), (second, lines[half:])):
            with open(target, "wb") as handle:
                handle.writelines(part)
                handle.flush()
                os.fsync(handle.fileno())
        path.unlink()

    def _forget(self, path: Path, size: int) -> None:
        path.unlink(missing_ok=True)
        with self._lock:
            self._spool_bytes = max(0, self._spool_bytes - size)

    def _seal_locked(self) -> None:
        if self._open_file is None:
            return
        self._open_file.flush()
        if self.fsync != "never":
            os.fsync(self._open_file.fileno())
        self._open_file.close()
        self._open_path.rename(self._open_path.with_suffix(".ready"))
        self._open_file = None
        self._open_path = None
        self._open_count = 0

    def _pending_files(self) -> list[Path]:
        return sorted(p for p in self.spool.iterdir() if p.suffix in (".ready", ".open"))


def _sequence_of(path: Path) -> int:
    digits = "".join(ch for ch in path.stem if ch.isdigit())
    return int(digits[:12] or 0)


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


__all__ = ["Shipper", "ShipperFull", "batch_body", "request_headers"]
