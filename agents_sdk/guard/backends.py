"""Where decisions are made: ``EmbeddedBackend`` (in process, the Rego engine and the
bundle a ``BundleClient`` keeps active) and ``OPAHTTPBackend`` (an OPA, or ``warden
sidecar``, over HTTP). Both implement ``DecisionBackend``: ``decide`` never raises, it
answers a decision object (a fail-closed deny when it cannot decide).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, Protocol

from agents_sdk.bundles import Bundle, BundleClient
from agents_sdk.bundles.multi import BundleSet
from agents_sdk.engine import CompiledPolicy, RegoEngine
from agents_sdk.guard.decision import DECISION_PATH, fail_closed_result

__all__ = ["DecisionBackend", "EmbeddedBackend", "OPAHTTPBackend"]


class DecisionBackend(Protocol):
    """Where decisions are made. ``decide`` never raises: it answers a decision object
    (a fail-closed deny when it cannot decide) and the decision id, if it has one."""

    def decide(self, input: dict[str, Any], *, timeout: float | None = None) -> tuple[dict[str, Any], str | None]: ...

    def close(self) -> None: ...


class EmbeddedBackend:
    """Decides in process with the embedded Rego engine.

    Give it a ``BundleClient``: each bundle the client is about to activate is compiled
    first (a bundle that does not compile is refused and the previous policy stays), then
    swapped in atomically. ``start`` (default) starts the client's background refresher.
    ``EmbeddedBackend.from_modules`` compiles modules directly (tests, local development).
    """

    def __init__(
        self,
        bundles: BundleClient | BundleSet | None = None,
        *,
        engine: RegoEngine | None = None,
        start: bool = True,
    ):
        self.engine = engine or RegoEngine()
        self.bundles = bundles
        self._policy: CompiledPolicy | None = None
        self._revision: str | None = None
        self._data: dict[str, Any] | None = None  # the active bundle's data (delegation verifies against it)
        self._lock = threading.Lock()
        if bundles is not None:
            bundles.set_activator(self._activate_in_worker)  # compile before the client makes it active
            if bundles.active is not None:
                self.activate(bundles.active)
            if start:
                bundles.start()

    @classmethod
    def from_modules(
        cls, modules: Mapping[str, str], data: Mapping[str, Any] | None = None, *, engine: RegoEngine | None = None
    ) -> EmbeddedBackend:
        """A backend for fixed modules and data. Raises RegoCompileError if they don't compile."""
        backend = cls(engine=engine)
        backend._policy = backend.engine.compile(dict(modules), dict(data or {}))
        backend._revision = "local"
        backend._data = dict(data or {})
        return backend

    @property
    def revision(self) -> str | None:
        """The revision of the bundle decisions are made with, or None before the first one."""
        return self._revision

    @property
    def data(self) -> dict[str, Any] | None:
        """The data of the active bundle (None before the first one)."""
        return self._data

    @property
    def policy(self) -> CompiledPolicy | None:
        return self._policy

    def activate(self, bundle: Bundle) -> None:
        """Compile ``bundle`` and make it the policy; a bundle with the active policy's modules
        only replaces its data (no recompile). Raises RegoCompileError if it does not compile
        (the previous policy stays)."""
        current = self._policy
        if current is not None and current.modules == bundle.modules:
            # Only the data changed (a registry bundle of the split layout, a suspension):
            # nothing to recompile; each deciding thread loads the new data before its next
            # decision, so no decision is made with the old data after this returns.
            current.set_data(bundle.data, copied=False)  # a parsed bundle's data: never changed after
            with self._lock:
                self._revision, self._data = bundle.revision, bundle.data
            return
        policy = self.engine.compile(bundle.modules, bundle.data, copied=False)  # a parsed bundle's data
        with self._lock:
            self._policy, self._revision, self._data = policy, bundle.revision, bundle.data

    def _activate_in_worker(self, bundle: Bundle) -> None:
        """``activate`` on a short-lived thread of its own.

        The engine's objects may only be dropped by the thread that made them. Compiling on
        the bundle refresher (a daemon thread abandoned mid long poll at interpreter exit)
        left an engine that the exiting interpreter then dropped from the main thread:
        ``Engine is unsendable`` printed at exit. A worker that ends right after compiling
        drops its engine itself; each deciding thread builds its own session anyway.
        """
        failure: list[BaseException] = []

        def compile_it() -> None:
            try:
                self.activate(bundle)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
                failure.append(exc)

        worker = threading.Thread(target=compile_it, name="warden-compile", daemon=False)
        worker.start()
        worker.join()
        if failure:
            raise failure[0]

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        """Block until a policy is active; True if one is."""
        if self._policy is not None:
            return True
        if self.bundles is None:
            return False
        return self.bundles.wait_until_ready(timeout) and self._policy is not None

    def evaluate(self, query: str, input: Any = None) -> Any:
        """Evaluate any rule (``data.a.b``) with the active policy. Raises LookupError when no
        policy is active, RegoEngineError when evaluation fails."""
        policy = self._policy
        if policy is None:
            raise LookupError("no policy bundle is active")
        return policy.evaluate(query, input)

    def decide(self, input: dict[str, Any], *, timeout: float | None = None) -> tuple[dict[str, Any], str | None]:
        policy = self._policy
        if policy is None:
            return fail_closed_result("no-policy-bundle", "No policy bundle is active, so every action is denied"), None
        stale = self.bundles.age_problem() if self.bundles is not None else None
        if stale is not None:
            return fail_closed_result("stale-bundle", f"Every action is denied: {stale}"), None
        started = time.perf_counter()
        try:
            result = policy.decide(input)
        except Exception as exc:  # noqa: BLE001 - a panic or a value the engine cannot take: still a deny
            return fail_closed_result("engine-error", f"Policy evaluation failed: {exc}"), None
        elapsed = time.perf_counter() - started
        # The engine cannot be interrupted; a decision later than the deadline is not trusted.
        if timeout is not None and elapsed > timeout:
            return fail_closed_result(
                "decision-timeout", f"The decision took {elapsed * 1000:.1f} ms, over the {timeout * 1000:.0f} ms limit"
            ), None
        return result, None

    def close(self) -> None:
        if self.bundles is not None:
            self.bundles.stop()


class OPAHTTPBackend:
    """Asks an OPA, or ``warden sidecar``, over its REST API:
    ``POST {url}/v1/data/warden/decision`` with ``{"input": …}`` → ``{"result": …}``.

    One keep-alive connection per thread. A timeout, a refused connection, a non-200
    answer or an undefined result is a deny that says which.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8181",
        *,
        path: str = DECISION_PATH,
        timeout: float = 1.0,
        token: str | None = None,
    ):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"OPA URL {url!r} must be http(s)://host[:port]")
        self.url = url.rstrip("/")
        self._scheme = parsed.scheme
        self._host = parsed.hostname
        self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._path = f"{parsed.path.rstrip('/')}/v1/data/{path.strip('/')}"
        self.timeout = timeout
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._local = threading.local()

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            connection = cls(self._host, self._port, timeout=timeout)
            connection.connect()
            # Small request, small answer: don't let Nagle hold them back.
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.connection = connection
        else:
            connection.sock.settimeout(timeout)
        return connection

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def decide(self, input: dict[str, Any], *, timeout: float | None = None) -> tuple[dict[str, Any], str | None]:
        timeout = self.timeout if timeout is None else timeout
        try:
            body = json.dumps({"input": input}).encode("utf-8")
        except (TypeError, ValueError) as exc:
            return fail_closed_result("malformed-input", f"The input is not JSON: {exc}"), None
        deadline = time.monotonic() + timeout
        for attempt in (1, 2):
            reused = getattr(self._local, "connection", None) is not None
            try:
                connection = self._connection(max(deadline - time.monotonic(), 0.001))
                connection.request("POST", self._path, body=body, headers=self._headers)
                response = connection.getresponse()
                raw = response.read()
                status = response.status
            except TimeoutError:
                self._drop_connection()
                return fail_closed_result(
                    "decision-timeout", f"No decision from {self.url} within {timeout * 1000:.0f} ms"
                ), None
            except (http.client.HTTPException, OSError) as exc:
                self._drop_connection()
                # A kept-alive connection the server closed meanwhile: retry once on a new one.
                if reused and attempt == 1 and time.monotonic() < deadline:
                    continue
                return fail_closed_result("engine-unreachable", f"Cannot reach the policy engine at {self.url}: {exc}"), None
            break
        if status != 200:
            return fail_closed_result(
                "engine-error", f"The policy engine at {self.url} answered HTTP {status}: {raw[:200].decode('utf-8', 'replace')}"
            ), None
        try:
            answer = json.loads(raw)
        except ValueError:
            return fail_closed_result("engine-error", f"The policy engine at {self.url} answered something that is not JSON"), None
        decision_id = answer.get("decision_id") if isinstance(answer, dict) else None
        if not isinstance(answer, dict) or "result" not in answer:
            return fail_closed_result(
                "undefined-decision", f"{self._path} is undefined at {self.url}: is a Warden policy bundle active?"
            ), decision_id
        return answer["result"], decision_id

    def close(self) -> None:
        self._drop_connection()
