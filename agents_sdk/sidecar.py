"""``warden sidecar``: a local decision server that speaks OPA's REST API.

    warden sidecar --config config.yaml --addr 127.0.0.1:8181

It reads OPA's own config.yaml (services, keys, bundles, decision_logs, status, labels,
persistence_directory), keeps the configured bundle active with the same bundle client
as the embedded backend, and answers what agents ask an OPA:

    POST /v1/data/{path}   {"input": …} → {"result": …, "decision_id": …}  (result left out when undefined)
    GET  /v1/data/{path}   the same without input (or ?input=<JSON>)
    GET  /health           200 once a bundle is active, 500 before (also ?bundles, ?plugins)

Each decision is shipped to ``<decision_logs service>/logs`` in OPA's decision-log format
(gzip JSON array, batched, retried with backoff, bounded queue), and the sidecar's state
to ``<status service>/status`` as OPA does. Where a real OPA runs, it replaces the
sidecar with no change for the agents.

The server is asyncio with a small HTTP/1.1 reader (keep-alive, Content-Length and
chunked bodies): decisions are evaluated on the event loop's thread, which owns the
engine, so a request costs one parse, one evaluation and one write.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import json
import logging
import os
import random
import re
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents_sdk import __version__
from agents_sdk.bundles import (
    BundleClient,
    BundleStatus,
    VerificationConfig,
    VerificationKey,
    backoff_delay,
)
from agents_sdk.engine import RegoEngineError
from agents_sdk.errors import WardenError
from agents_sdk.guard import EmbeddedBackend, masked

logger = logging.getLogger(__name__)

VERSION_LABEL = f"warden-sidecar-{__version__}"
DEFAULT_ADDR = "127.0.0.1:8181"
MAX_REQUEST_BODY = 8 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(WardenError):
    """The sidecar's config file is missing, unreadable, or not a valid OPA configuration."""


# -- configuration (OPA's config.yaml) --------------------------------------------------


@dataclass(frozen=True)
class Service:
    """``services.<name>``: where the control plane is and how to authenticate."""

    name: str
    url: str
    token: str | None = None
    token_path: str | None = None
    scheme: str = "Bearer"
    headers: Mapping[str, str] = field(default_factory=dict)
    response_header_timeout: float = 10.0

    def authorization(self) -> str | None:
        if self.token_path:
            return f"{self.scheme} {Path(self.token_path).read_text('utf-8').strip()}"
        return f"{self.scheme} {self.token}" if self.token else None

    def endpoint(self, resource: str) -> str:
        # OPA joins with one slash, trimming slashes around the resource.
        return self.url.rstrip("/") + "/" + resource.strip("/")


@dataclass(frozen=True)
class BundleConfig:
    name: str
    service: str
    resource: str
    verification: VerificationConfig | None
    long_polling_timeout: int | None
    min_delay: float
    max_delay: float
    persist: bool


@dataclass(frozen=True)
class DecisionLogConfig:
    service: str
    resource: str = "/logs"
    min_delay: float = 300.0
    max_delay: float = 600.0
    upload_size_limit_bytes: int = 32768
    buffer_size_limit_events: int = 10000


@dataclass(frozen=True)
class SidecarConfig:
    """What the sidecar takes from OPA's config.yaml."""

    services: Mapping[str, Service]
    bundle: BundleConfig
    labels: Mapping[str, str]
    decision_logs: DecisionLogConfig | None = None
    status_service: str | None = None
    status_partition: str = ""
    persistence_directory: str = ".opa"


def _expand_env(text: str) -> str:
    return _ENV.sub(lambda m: os.environ.get(m.group(1), ""), text)


def load_config(path: str | os.PathLike[str]) -> SidecarConfig:
    """Read an OPA config file (YAML, or JSON) with ``${VAR}`` expanded from the environment.

    Raises ConfigError naming the field at fault; reading YAML needs PyYAML (JSON doesn't).
    """
    try:
        text = _expand_env(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        raw = json.loads(text)
    except ValueError:
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - PyYAML is in the sidecar extra
            raise ConfigError(
                f"{path} is YAML: install PyYAML (pip install 'warden-agents-sdk[sidecar]') or write it as JSON"
            ) from exc
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping (OPA's configuration)")
    return parse_config(raw, base_dir=Path(path).resolve().parent)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping")
    return value


def _number(value: Any, where: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number")
    return float(value)


def parse_config(raw: Mapping[str, Any], *, base_dir: Path | None = None) -> SidecarConfig:
    """Build a SidecarConfig from OPA's configuration as a dict. Raises ConfigError."""
    services_raw = raw.get("services")
    if isinstance(services_raw, list):  # OPA accepts a list of {name: …, url: …} too
        services_raw = {s.get("name"): s for s in services_raw if isinstance(s, dict)}
    services_raw = _mapping(services_raw, "services")
    if not services_raw:
        raise ConfigError("services: at least one service (the control plane) is required")
    services: dict[str, Service] = {}
    for name, spec in services_raw.items():
        spec = _mapping(spec, f"services.{name}")
        url = spec.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"services.{name}.url must be an http(s) URL")
        bearer = _mapping(_mapping(spec.get("credentials"), f"services.{name}.credentials").get("bearer"),
                          f"services.{name}.credentials.bearer")
        if bearer.get("token") and bearer.get("token_path"):
            raise ConfigError(f"services.{name}.credentials.bearer: give token or token_path, not both")
        token_path = bearer.get("token_path")
        if token_path and base_dir is not None and not os.path.isabs(token_path):
            token_path = str(base_dir / token_path)
        services[name] = Service(
            name=name,
            url=url,
            token=bearer.get("token") or None,
            token_path=token_path or None,
            scheme=bearer.get("scheme") or "Bearer",
            headers={str(k): str(v) for k, v in _mapping(spec.get("headers"), f"services.{name}.headers").items()},
            response_header_timeout=_number(
                spec.get("response_header_timeout_seconds"), f"services.{name}.response_header_timeout_seconds", 10.0
            ),
        )
    first_service = next(iter(services))

    keys: dict[str, VerificationKey] = {}
    for key_id, spec in _mapping(raw.get("keys"), "keys").items():
        spec = _mapping(spec, f"keys.{key_id}")
        try:
            keys[key_id] = VerificationKey(
                key_id=key_id,
                algorithm=spec.get("algorithm") or "RS256",
                key=spec.get("key") or "",
                scope=spec.get("scope") or "",
            )
        except ValueError as exc:
            raise ConfigError(f"keys.{key_id}: {exc}") from exc

    bundles = _mapping(raw.get("bundles"), "bundles")
    if len(bundles) != 1:
        raise ConfigError("bundles: configure exactly one bundle (the environment's Warden bundle)")
    bundle_name, spec = next(iter(bundles.items()))
    spec = _mapping(spec, f"bundles.{bundle_name}")
    service = spec.get("service") or first_service
    if service not in services:
        raise ConfigError(f"bundles.{bundle_name}.service: no service named {service!r}")
    signing = _mapping(spec.get("signing"), f"bundles.{bundle_name}.signing")
    verification = None
    if signing or keys:
        try:
            verification = VerificationConfig(
                keys=keys,
                keyid=signing.get("keyid") or "",
                scope=signing.get("scope") or "",
                exclude_files=tuple(signing.get("exclude_files") or ()),
            )
        except ValueError as exc:
            raise ConfigError(f"bundles.{bundle_name}.signing.keyid: {exc}") from exc
    polling = _mapping(spec.get("polling"), f"bundles.{bundle_name}.polling")
    long_poll = polling.get("long_polling_timeout_seconds")
    if long_poll is not None and (not isinstance(long_poll, int) or long_poll < 1):
        raise ConfigError(f"bundles.{bundle_name}.polling.long_polling_timeout_seconds must be at least 1")
    min_delay = _number(polling.get("min_delay_seconds"), f"bundles.{bundle_name}.polling.min_delay_seconds", 60)
    max_delay = _number(polling.get("max_delay_seconds"), f"bundles.{bundle_name}.polling.max_delay_seconds", 120)
    if max_delay < min_delay:
        raise ConfigError(f"bundles.{bundle_name}.polling: max polling delay must be >= min polling delay")
    bundle = BundleConfig(
        name=bundle_name,
        service=service,
        resource=spec.get("resource") or f"bundles/{bundle_name}",
        verification=verification,
        long_polling_timeout=long_poll,
        min_delay=min_delay,
        max_delay=max_delay,
        persist=bool(spec.get("persist", False)),
    )

    decision_logs = None
    logs = _mapping(raw.get("decision_logs"), "decision_logs")
    if logs and not logs.get("console") or logs.get("service"):
        log_service = logs.get("service") or first_service
        if log_service not in services:
            raise ConfigError(f"decision_logs.service: no service named {log_service!r}")
        reporting = _mapping(logs.get("reporting"), "decision_logs.reporting")
        decision_logs = DecisionLogConfig(
            service=log_service,
            resource=logs.get("resource") or "/logs",
            min_delay=_number(reporting.get("min_delay_seconds"), "decision_logs.reporting.min_delay_seconds", 300),
            max_delay=_number(reporting.get("max_delay_seconds"), "decision_logs.reporting.max_delay_seconds", 600),
            upload_size_limit_bytes=int(
                _number(reporting.get("upload_size_limit_bytes"), "decision_logs.reporting.upload_size_limit_bytes", 32768)
            ),
            buffer_size_limit_events=int(
                _number(reporting.get("buffer_size_limit_events"), "decision_logs.reporting.buffer_size_limit_events", 10000)
            ),
        )

    status = _mapping(raw.get("status"), "status")
    status_service = None
    if status and not status.get("console") or status.get("service"):
        status_service = status.get("service") or first_service
        if status_service not in services:
            raise ConfigError(f"status.service: no service named {status_service!r}")

    labels = {str(k): str(v) for k, v in _mapping(raw.get("labels"), "labels").items()}
    # OPA's default is .opa in the working directory.
    persistence = str(Path(raw.get("persistence_directory") or ".opa").absolute())
    return SidecarConfig(
        services=services,
        bundle=bundle,
        labels=labels,
        decision_logs=decision_logs,
        status_service=status_service,
        status_partition=str(status.get("partition_name") or ""),
        persistence_directory=persistence,
    )


# -- talking to the control plane -------------------------------------------------------


class UploadError(Exception):
    def __init__(self, message: str, http_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.http_code = http_code


def _post(service: Service, resource: str, body: bytes, headers: Mapping[str, str], timeout: float) -> None:
    request = urllib.request.Request(service.endpoint(resource), data=body, method="POST")
    for key, value in {**service.headers, **headers}.items():
        request.add_header(key, value)
    authorization = service.authorization()
    if authorization:
        request.add_header("Authorization", authorization)
    request.add_header("User-Agent", f"warden-sidecar/{__version__}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise UploadError(f"server replied with HTTP {exc.code} {exc.reason}", exc.code) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise UploadError(f"cannot reach {service.endpoint(resource)}: {getattr(exc, 'reason', exc)}") from exc


def _rfc3339(moment: float | None = None) -> str:
    when = datetime.fromtimestamp(moment, UTC) if moment is not None else datetime.now(UTC)
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


class DecisionLogShipper:
    """Batches decision-log events and uploads them as OPA does: ``POST <service>/logs``, a
    gzip JSON array per chunk (≤ ``upload_size_limit_bytes``), every ``min..max_delay``
    seconds; a failed chunk goes back to the queue and the next try backs off. The queue
    holds at most ``buffer_size_limit_events``; when full the oldest events are dropped
    and counted in ``dropped``."""

    def __init__(self, service: Service, config: DecisionLogConfig):
        self.service = service
        self.config = config
        self._queue: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.uploaded = 0
        self.last_error: UploadError | None = None

    def log(self, event: dict[str, Any]) -> None:
        with self._lock:
            if len(self._queue) >= self.config.buffer_size_limit_events:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(event)

    @property
    def pending(self) -> int:
        return len(self._queue)

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
        """Upload everything queued now; True if the queue was emptied."""
        while True:
            with self._lock:
                events = list(self._queue)
                self._queue.clear()
            if not events:
                return True
            chunks = self._chunks(events)
            for index, (body, sent) in enumerate(chunks):
                try:
                    _post(
                        self.service,
                        self.config.resource,
                        body,
                        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
                        self.service.response_header_timeout,
                    )
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

    def _chunks(self, events: list[dict[str, Any]]) -> list[tuple[bytes, list[dict[str, Any]]]]:
        encoded = [json.dumps(event, separators=(",", ":")).encode("utf-8") for event in events]
        chunks: list[tuple[bytes, list[dict[str, Any]]]] = []

        def split(start: int, end: int) -> None:
            body = gzip.compress(b"[" + b",".join(encoded[start:end]) + b"]", compresslevel=6)
            if len(body) <= self.config.upload_size_limit_bytes or end - start == 1:
                if len(body) > self.config.upload_size_limit_bytes:
                    self.dropped += 1  # one event larger than an upload may be: OPA drops it too
                    logger.warning("decision %s is larger than the upload limit; dropped", events[start].get("decision_id"))
                    return
                chunks.append((body, events[start:end]))
                return
            middle = (start + end) // 2
            split(start, middle)
            split(middle, end)

        split(0, len(encoded))
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
        self.flush()


class StatusReporter:
    """Posts the sidecar's state to ``<service>/status`` whenever something changes (every
    bundle poll, as OPA does). No retry: the next change sends a fresh snapshot."""

    def __init__(self, service: Service, partition: str, snapshot: Callable[[], dict[str, Any]]):
        self.service = service
        self.resource = f"status/{partition}" if partition else "status"
        self._snapshot = snapshot
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
            _post(self.service, self.resource, body, {"Content-Type": "application/json"},
                  self.service.response_header_timeout)
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


# -- the sidecar ------------------------------------------------------------------------


class Sidecar:
    """The decision server, its bundle client, decision-log shipper and status reporter.

    ``start()`` runs everything in background threads (the HTTP server on its own event
    loop) and returns once the socket listens; ``stop()`` flushes decision logs and
    stops. ``address`` is the (host, port) it listens on (port 0 picks a free one).
    """

    def __init__(self, config: SidecarConfig, *, addr: str = DEFAULT_ADDR):
        self.config = config
        host, _, port = addr.rpartition(":")
        self._bind = (host or "127.0.0.1", int(port))
        self.instance_id = str(uuid.uuid4())
        self.labels = {**config.labels, "id": self.instance_id, "version": VERSION_LABEL}
        bundle = config.bundle
        service = config.services[bundle.service]
        self.bundles = BundleClient(
            service.url,
            bundle.resource,
            name=bundle.name,
            token=service.token,
            token_path=service.token_path,
            scheme=service.scheme,
            headers=service.headers,
            verification=bundle.verification,
            persist_dir=(Path(config.persistence_directory) / "bundles" / bundle.name) if bundle.persist else None,
            long_polling_timeout=bundle.long_polling_timeout,
            min_delay=bundle.min_delay,
            max_delay=bundle.max_delay,
            response_header_timeout=service.response_header_timeout,
            on_status=lambda _status: self._status_changed(),
        )
        self.backend = EmbeddedBackend(self.bundles, start=False)
        self.bundles.set_activator(self._activate_on_loop)
        self.decision_logs = (
            DecisionLogShipper(config.services[config.decision_logs.service], config.decision_logs)
            if config.decision_logs
            else None
        )
        self.status_reporter = (
            StatusReporter(config.services[config.status_service], config.status_partition, self.status)
            if config.status_service
            else None
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.address: tuple[str, int] = self._bind

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Sidecar:
        """Start serving; returns once listening. Raises OSError if the address is taken."""
        if self.status_reporter is not None:
            self.status_reporter.start()
        if self.decision_logs is not None:
            self.decision_logs.start()
        self._thread = threading.Thread(target=self._serve, name="warden-sidecar", daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self._start_error is not None:
            raise self._start_error
        self.bundles.start()
        return self

    def stop(self) -> None:
        """Stop serving, stop refreshing the bundle, flush decision logs, send a last status."""
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self.bundles.stop(timeout=0.5)
        if self.decision_logs is not None:
            self.decision_logs.stop()
        if self.status_reporter is not None:
            self.status_reporter.trigger()
            self.status_reporter.stop()

    def serve_forever(self) -> None:
        """Start and block until SIGINT or SIGTERM, then stop cleanly."""
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        self.start()
        logger.info("warden sidecar listening on http://%s:%d", *self.address)
        done.wait()
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._connection, self._bind[0], self._bind[1], reuse_address=True)
            )
        except BaseException as exc:  # noqa: BLE001 - re-raised by start() in the caller's thread
            self._start_error = exc
            self._started.set()
            return
        self.address = self._server.sockets[0].getsockname()[:2]
        self._started.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            # Close kept-alive connections while the loop can still run their cleanup.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

    # -- status ---------------------------------------------------------------------------

    def _status_changed(self) -> None:
        if self.status_reporter is not None:
            self.status_reporter.trigger()

    def _activate_on_loop(self, bundle: Any) -> None:
        # The engine's objects belong to the thread that made them: compile and swap on the
        # event loop's thread, which evaluates every request, so no engine ever changes thread.
        loop = self._loop
        if loop is None or not loop.is_running():
            self.backend.activate(bundle)
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def activate() -> None:
            try:
                self.backend.activate(bundle)
            except BaseException as exc:  # noqa: BLE001 - re-raised by done.result() in the bundle thread
                done.set_exception(exc)
            else:
                done.set_result(None)

        loop.call_soon_threadsafe(activate)
        done.result(timeout=120)

    def status(self) -> dict[str, Any]:
        """The sidecar's state in the shape of OPA's status API."""
        bundle: BundleStatus = self.bundles.status()
        ready = self.bundles.active is not None
        report: dict[str, Any] = {
            "labels": self.labels,
            "bundles": {bundle.name: bundle.as_opa()},
            "plugins": {
                "bundle": {"state": "OK" if ready else "NOT_READY"},
                "status": {"state": "OK"},
            },
        }
        if self.decision_logs is not None:
            report["plugins"]["decision_logs"] = {"state": "OK"}
            logs: dict[str, Any] = {"metrics": {"counter_decision_logs_dropped": self.decision_logs.dropped,
                                                "counter_decision_logs_pending": self.decision_logs.pending}}
            if self.decision_logs.last_error is not None:
                logs.update(code="decision_log_error", message=f"log upload failed, {self.decision_logs.last_error.message}")
                if self.decision_logs.last_error.http_code:
                    logs["http_code"] = self.decision_logs.last_error.http_code
            report["decision_logs"] = logs
        return report

    # -- HTTP -----------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        requested_by = f"{peer[0]}:{peer[1]}" if peer else ""
        sock = writer.get_extra_info("socket")
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    writer.write(_response(431, {"code": "invalid_parameter", "message": "request headers too large"}, False))
                    return
                try:
                    method, target, version, headers = _parse_head(head)
                    body = await _read_body(reader, headers)
                except _BadRequest as exc:
                    writer.write(_response(exc.status, {"code": "invalid_parameter", "message": exc.message}, False))
                    await writer.drain()
                    return
                keep_alive = _keep_alive(version, headers)
                status, answer = self._handle(method, target, body, requested_by)
                writer.write(_response(status, answer, keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    def _handle(self, method: str, target: str, body: bytes, requested_by: str) -> tuple[int, Any]:
        path, _, query = target.partition("?")
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        if path == "/health" or path == "/health/":
            if method != "GET":
                return 405, {"code": "method_not_allowed", "message": "use GET"}
            if self.bundles.active is None:
                status = self.bundles.status()
                return 500, {"error": f"bundle {status.name} not activated" + (f": {status.message}" if status.message else "")}
            return 200, {}
        if path == "/v1/data" or path.startswith("/v1/data/"):
            if method not in ("GET", "POST"):
                return 405, {"code": "method_not_allowed", "message": "use GET or POST"}
            return self._data(method, path[len("/v1/data"):], params, body, requested_by)
        return 404, {"code": "resource_not_found", "message": f"{method} {path} is not served by warden sidecar"}

    def _data(self, method: str, path: str, params: dict, body: bytes, requested_by: str) -> tuple[int, Any]:
        segments = [urllib.parse.unquote(s) for s in path.strip("/").split("/") if s]
        if not all(_SEGMENT.match(s) for s in segments):
            return 400, {"code": "invalid_parameter", "message": f"unsupported data path /{'/'.join(segments)}"}
        has_input, input_value = False, None
        if method == "POST" and body.strip():
            try:
                document = json.loads(body)
            except ValueError as exc:
                return 400, {"code": "invalid_parameter", "message": f"body contains malformed input document: {exc}"}
            if not isinstance(document, dict):
                return 400, {"code": "invalid_parameter", "message": 'body must be {"input": …}'}
            if "input" in document:
                has_input, input_value = True, document["input"]
        elif "input" in params:
            try:
                has_input, input_value = True, json.loads(params["input"][0])
            except ValueError as exc:
                return 400, {"code": "invalid_parameter", "message": f"input parameter is not JSON: {exc}"}
        decision_id = str(uuid.uuid4())
        query = "data" + "".join(f".{s}" for s in segments)
        started = time.perf_counter_ns()
        answer: dict[str, Any] = {"decision_id": decision_id}
        error = None
        try:
            result = self.backend.evaluate(query, input_value if has_input else None)
        except LookupError:
            result = None  # no bundle yet: undefined, as in OPA
        except RegoEngineError as exc:
            error = {"code": "internal_error", "message": str(exc)}
            result = None
        elapsed = time.perf_counter_ns() - started
        if result is not None:
            answer["result"] = result
        if "metrics" in params:
            answer["metrics"] = {"timer_rego_query_eval_ns": elapsed}
        self._log_decision(decision_id, "/".join(segments), has_input, input_value, answer, error, elapsed, requested_by)
        if error is not None:
            return 500, {**error, "decision_id": decision_id}
        return 200, answer

    def _log_decision(self, decision_id: str, path: str, has_input: bool, input_value: Any, answer: dict,
                      error: dict | None, elapsed_ns: int, requested_by: str) -> None:
        if self.decision_logs is None:
            return
        event: dict[str, Any] = {
            "labels": self.labels,
            "decision_id": decision_id,
            "path": path,
            "requested_by": requested_by,
            "timestamp": _rfc3339(),
            "metrics": {"timer_rego_query_eval_ns": elapsed_ns},
        }
        revision = self.backend.revision
        if revision:
            event["bundles"] = {self.config.bundle.name: {"revision": revision}}
        if has_input:
            result = answer.get("result")
            pointers = (result.get("obligations") or {}).get("mask") if isinstance(result, dict) else None
            if pointers:
                # The policy asks that these input values never reach the audit log.
                event["input"] = masked({"input": input_value}, [f"/input{p}" for p in pointers], "**REDACTED**")["input"]
                event["erased"] = [f"/input{p}" for p in pointers]
            else:
                event["input"] = input_value
        if "result" in answer:
            event["result"] = answer["result"]
        if error is not None:
            event["error"] = error
        self.decision_logs.log(event)


# -- a small HTTP/1.1 reader ----------------------------------------------------------------


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
            431: "Request Header Fields Too Large", 500: "Internal Server Error"}


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    if len(head) > MAX_HEADER_BYTES:
        raise _BadRequest(431, "request headers too large")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400, "malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], parts[2], headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError as exc:
                raise _BadRequest(400, "malformed chunk size") from exc
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return bytes(body)
            if len(body) + size > MAX_REQUEST_BODY:
                raise _BadRequest(413, "request body too large")
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    length = headers.get("content-length")
    if not length:
        return b""
    try:
        size = int(length)
    except ValueError as exc:
        raise _BadRequest(400, "malformed Content-Length") from exc
    if size < 0 or size > MAX_REQUEST_BODY:
        raise _BadRequest(413, "request body too large")
    return await reader.readexactly(size)


def _keep_alive(version: str, headers: dict[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"


def _response(status: int, answer: Any, keep_alive: bool) -> bytes:
    body = json.dumps(answer, separators=(",", ":")).encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode("ascii") + body


def run(config_path: str, addr: str = DEFAULT_ADDR) -> int:
    """Entry point of ``warden sidecar``: serve until interrupted. Raises ConfigError."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sidecar = Sidecar(load_config(config_path), addr=addr)
    sidecar.serve_forever()
    return 0
