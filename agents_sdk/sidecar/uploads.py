"""Decision logs and status sent to the control plane as OPA sends them."""


from __future__ import annotations

import gzip
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import urllib3

from agents_sdk.bundles import (
    backoff_delay,
)
from agents_sdk.errors import WardenError
from agents_sdk.sidecar.config import DecisionLogConfig, Service
from agents_sdk.version import __version__

logger = logging.getLogger(__name__)

# -- talking to the control plane -------------------------------------------------------


class UploadError(WardenError):
    def __init__(self, message: str, http_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.http_code = http_code


def _pool(timeout: float) -> urllib3.PoolManager:
    # One kept-alive connection per uploading thread; redirects are not followed (the bearer
    # token must not travel to another host), and only a failed connect is retried at once:
    # a failed upload waits for the next round, with backoff.
    return urllib3.PoolManager(
        num_pools=2,
        maxsize=1,
        retries=urllib3.Retry(total=1, connect=1, read=0, status=0, other=0, redirect=False, raise_on_redirect=False),
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
    )


def _post(pool: urllib3.PoolManager, service: Service, resource: str, body: bytes, headers: Mapping[str, str]) -> None:
    url = service.endpoint(resource)
    sent = {**service.headers, **headers, "User-Agent": f"warden-sidecar/{__version__}"}
    authorization = service.authorization()
    if authorization:
        sent["Authorization"] = authorization
    try:
        response = pool.request("POST", url, body=body, headers=sent)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise UploadError(f"cannot reach {url}: {exc}") from exc
    if response.status >= 300:
        raise UploadError(f"server replied with HTTP {response.status} {response.reason}", response.status)


def timestamp(ns: int | None = None) -> str:
    """Now (or ``ns`` since the epoch), as ``rfc3339()`` writes it, the date and time
    formatted once a second."""
    if ns is None:
        ns = time.time_ns()
    second, rest = divmod(ns, 1_000_000_000)
    if second != _second[0]:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))]
    return f"{_second[1]}{rest // 1000:06d}Z"


_second: list[Any] = [-1, ""]


def rfc3339(moment: float | None = None) -> str:
    when = datetime.fromtimestamp(moment, UTC) if moment is not None else datetime.now(UTC)
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


class DecisionLogShipper:
    """Batches decision-log events and uploads them as OPA does: ``POST <service>/logs``, a
    gzip JSON array per chunk (≤ ``upload_size_limit_bytes``), every ``min..max_delay``
    seconds; a failed chunk goes back to the queue and the next try backs off.

    Drop policy: the queue holds at most ``buffer_size_limit_events``; when it is full (the
    control plane unreachable for that long) the oldest event is dropped for each new one,
    as OPA does. Every drop is counted in ``dropped`` (the status report's
    ``counter_decision_logs_dropped``) and logged as a warning by the upload thread, so no
    decision log is lost silently; an event with no JSON form, or larger than an upload may
    be, is dropped and counted the same way.

    Each event is encoded when it is logged, on the deciding thread (tens of µs, the same for
    every decision), and the queue holds bytes: taking a batch is a swap of the queue under
    the lock, and the upload thread only joins, gzips (zlib releases the GIL) and posts them,
    so no upload ever holds up a decision, and a queued event cannot change after its
    decision."""

    def __init__(self, service: Service, config: DecisionLogConfig):
        self.service = service
        self.config = config
        self._queue: deque[bytes] = deque()
        self._http = _pool(service.response_header_timeout)
        self._lock = threading.Lock()
        # One flush at a time: the upload thread's and a caller's (stop, the log process's
        # flush frame) would otherwise post two chunks at once, the later events first.
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self._dropped_reported = 0
        self._ratio = 10.0  # the last upload's uncompressed over gzipped size (_chunks)
        self.uploaded = 0
        self.last_error: UploadError | None = None

    def log(self, event: dict[str, Any]) -> None:
        try:
            encoded = _ENCODE(event).encode("utf-8")
        except (TypeError, ValueError) as exc:  # never the decision's problem: count it, as OPA counts drops
            self.drop(event.get("decision_id"), exc)
            return
        self.log_encoded(encoded)

    def drop(self, decision_id: Any, problem: Exception) -> None:
        """Count (and say why) an event with no JSON form."""
        logger.warning("decision %s has no JSON form for the log; dropped: %s", decision_id, problem)
        with self._lock:
            self.dropped += 1

    def log_encoded(self, encoded: bytes) -> None:
        """Queue one event already encoded as JSON (the sidecar builds it at decision time)."""
        with self._lock:
            if len(self._queue) >= self.config.buffer_size_limit_events:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(encoded)

    def log_many(self, events: list[bytes]) -> None:
        """``log_encoded`` for each of ``events`` in turn, under one hold of the lock."""
        with self._lock:
            queue = self._queue
            queue.extend(events)
            over = len(queue) - self.config.buffer_size_limit_events
            if over > 0:  # the oldest go, as one log_encoded each would have dropped them
                for _ in range(over):
                    queue.popleft()
                self.dropped += over

    @property
    def pending(self) -> int:
        return len(self._queue)

    def counters(self) -> dict[str, int]:
        """``uploaded``, ``dropped`` and ``pending`` (served at the sidecar's /metrics)."""
        return {"uploaded": self.uploaded, "dropped": self.dropped, "pending": len(self._queue)}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="warden-decision-logs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Flush what is queued (one attempt per chunk within ``timeout``), then stop."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def flush(self) -> bool:
        """Upload everything queued now, in the order logged; True if the queue was emptied.
        A flush already running is waited for (its events go first)."""
        with self._flushing:
            return self._flush()

    def _flush(self) -> bool:
        while True:
            with self._lock:
                events, self._queue = self._queue, deque()
            if not events:
                return True
            chunks = self._chunks(events)
            for index, (body, sent) in enumerate(chunks):
                try:
                    _post(self._http, self.service, self.config.resource, body,
                          {"Content-Type": "application/json", "Content-Encoding": "gzip"})
                except UploadError as exc:
                    self.last_error = exc
                    # Put back this chunk and every later one, oldest first, within the bound.
                    remaining = [event for _, events_of in chunks[index:] for event in events_of]
                    with self._lock:
                        room = self.config.buffer_size_limit_events - len(self._queue)
                        keep = remaining[-room:] if room > 0 else []
                        self.dropped += len(remaining) - len(keep)
                        self._queue.extendleft(reversed(keep))
                    return False
                self.uploaded += len(sent)
                self.last_error = None

    def _chunks(self, events: deque[bytes]) -> list[tuple[bytes, list[bytes]]]:
        encoded = list(events)
        chunks: list[tuple[bytes, list[bytes]]] = []

        def split(start: int, end: int) -> None:
            raw = b"[" + b",".join(encoded[start:end]) + b"]"
            body = gzip.compress(raw, compresslevel=_GZIP_LEVEL)
            if len(body) <= self.config.upload_size_limit_bytes or end - start == 1:
                self._ratio = len(raw) / max(1, len(body))
                if len(body) > self.config.upload_size_limit_bytes:
                    with self._lock:
                        self.dropped += 1  # one event larger than an upload may be: OPA drops it too
                    logger.warning("decision %s is larger than the upload limit; dropped", _decision_id(encoded[start]))
                    return
                chunks.append((body, encoded[start:end]))
                return
            middle = (start + end) // 2
            split(start, middle)
            split(middle, end)

        # First cut by uncompressed size, at the last upload's compression ratio (decision logs
        # compress 10 to 20x) less a margin: a busy second is not gzipped whole only to be split,
        # and each upload comes close to the limit (at a fixed 8x they carried half of it: twice
        # the posts per event). A group still too large is halved, and the ratio follows.
        budget = int(self.config.upload_size_limit_bytes * min(_MAX_RATIO, max(2.0, 0.8 * self._ratio)))
        start, size = 0, 0
        for index, item in enumerate(encoded):
            if size and size + len(item) > budget:
                split(start, index)
                start, size = index, 0
            size += len(item) + 1
        if start < len(encoded):
            split(start, len(encoded))
        return chunks

    def _run(self) -> None:
        retry = 0
        while not self._stop.is_set():
            delay = backoff_delay(retry, self.config.max_delay) if retry else random.uniform(
                self.config.min_delay, self.config.max_delay
            )
            self._wake.wait(max(delay, 0.05))
            self._wake.clear()
            if self._stop.is_set():
                break
            retry = 0 if self.flush() else retry + 1
            self._report_drops()
        self.flush()
        self._report_drops()

    def _report_drops(self) -> None:
        dropped = self.dropped
        if dropped > self._dropped_reported:
            logger.warning("%d decision-log events dropped (%d in all): the upload buffer of %d events was full%s",
                           dropped - self._dropped_reported, dropped, self.config.buffer_size_limit_events,
                           f"; last upload error: {self.last_error.message}" if self.last_error else "")
            self._dropped_reported = dropped


# Level 1: decision logs are repetitive JSON, compressed about 16x at level 1 against 19x at
# OPA's level 6, for under half the CPU (3 against 7 µs per event, measured on 2,000 events
# of the shipped library): the uploader shares the host's cores with the decisions.
_GZIP_LEVEL = 1
# At most this many bytes of JSON per byte of an upload are gzipped as one group.
_MAX_RATIO = 32.0

# Built once (json.dumps builds an encoder per call with non-default options).
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def _decision_id(encoded: bytes) -> str:
    try:
        return str(json.loads(encoded).get("decision_id"))
    except ValueError:
        return "?"


class StatusReporter:
    """Posts the sidecar's state to ``<service>/status`` whenever something changes (every
    bundle poll, as OPA does). No retry: the next change sends a fresh snapshot."""

    def __init__(self, service: Service, partition: str, snapshot: Callable[[], dict[str, Any]]):
        self.service = service
        self.resource = f"status/{partition}" if partition else "status"
        self._snapshot = snapshot
        self._http = _pool(service.response_header_timeout)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.last_error: UploadError | None = None

    def trigger(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="warden-status", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def send(self) -> None:
        body = (json.dumps(self._snapshot(), separators=(",", ":")) + "\n").encode("utf-8")
        try:
            _post(self._http, self.service, self.resource, body, {"Content-Type": "application/json"})
            self.sent += 1
            self.last_error = None
        except UploadError as exc:
            self.last_error = exc
            logger.info("status update failed: %s", exc.message)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self.send()  # the final state is sent on shutdown too
            if self._stop.is_set():
                break


