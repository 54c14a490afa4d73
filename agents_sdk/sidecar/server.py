"""The sidecar's decision server.

Every request gets a JSON answer; a request can never take the process down:

- the input is checked before the engine sees it (``agents_sdk.guard.inputs``): for the
  Warden decision (``/v1/data/warden/decision``) a bad input is a fail-closed deny
  ``malformed-input`` naming the field, for any other path a 400 naming it;
- an evaluation error or an expired bundle is, for the Warden decision, a fail-closed deny
  (``engine-error``, ``stale-bundle``) answered with 200 so agents read the reason; other
  paths answer OPA's ``500 {"code": "internal_error", ...}``;
- an unexpected failure while handling a request is logged and answered the same way.
"""


from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import json
import logging
import signal
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import agents_sdk.sidecar.authzen as authzen
from agents_sdk.bundles import (
    BundleClient,
    BundleStatus,
)
from agents_sdk.bundles.multi import BundleSet
from agents_sdk.delegation import REFUSAL_RULE as DELEGATION_REFUSED
from agents_sdk.delegation import ChainCache, delegation_input, registry_of
from agents_sdk.engine import RegoEngineError
from agents_sdk.engine.args_schema import malformed_args_result, tool_args_violations
from agents_sdk.guard import DECISION_QUERY, EmbeddedBackend
from agents_sdk.guard.decision import fail_closed_result
from agents_sdk.guard.inputs import input_problem
from agents_sdk.sidecar.answers import (
    Decided,
    DecisionIds,
    LogEvents,
    Repeat,
    RepeatAnswers,
    as_json,
    encode,
    encode_result,
    log_metrics_text,
)
from agents_sdk.sidecar.config import (
    DEFAULT_ADDR,
    PATH_SEGMENT,
    READ_TIMEOUT,
    VERSION_LABEL,
    BundleConfig,
    ConfigError,
    SidecarConfig,
    load_config,
)
from agents_sdk.sidecar.logproc import DecisionLogProcess
from agents_sdk.sidecar.uploads import DecisionLogShipper, StatusReporter

logger = logging.getLogger(__name__)

GIL_SWITCH_INTERVAL = 0.001
_NO_PARAMS: dict[str, list[str]] = {}

# -- the sidecar ------------------------------------------------------------------------


class Sidecar:
    """The decision server, its bundle client, decision-log shipper and status reporter.

    ``start()`` runs everything in background threads (the HTTP server, on its own
    event loop) and returns once the socket listens; ``stop()`` flushes decision logs and
    stops. ``address`` is the (host, port) it listens on (port 0 picks a free one).
    ``read_timeout``: seconds a request may take to arrive (agents_sdk.sidecar.serving).
    ``decision_log_process``: upload decision logs from a child process (as `warden
    sidecar` does, agents_sdk.sidecar.logproc) instead of a thread of this process.
    """

    def __init__(self, config: SidecarConfig, *, addr: str = DEFAULT_ADDR, read_timeout: float = READ_TIMEOUT,
                 decision_log_process: bool = False):
        self.config = config
        host, _, port = addr.rpartition(":")
        self._bind = (host or "127.0.0.1", int(port))
        self.instance_id = str(uuid.uuid4())
        self.labels = {**config.labels, "id": self.instance_id, "version": VERSION_LABEL}
        clients = [self._bundle_client(bundle) for bundle in (config.bundle, *config.more_bundles)]
        # Several bundles (the split layout: policy + registry) are activated together.
        self.bundles: BundleClient | BundleSet = clients[0] if len(clients) == 1 else BundleSet(clients)
        self.backend = EmbeddedBackend(self.bundles, start=False)
        self._chains = ChainCache()  # delegation chains verified against the active bundle
        self.bundles.set_activator(self._activate_on_loop)
        # Uploads from a child process (`warden sidecar`: no upload ever holds this process's
        # GIL) or, embedded, from a thread (agents_sdk.sidecar.logproc, .uploads).
        shipper = DecisionLogProcess if decision_log_process else DecisionLogShipper
        self.decision_logs: DecisionLogShipper | DecisionLogProcess | None = (
            shipper(config.services[config.decision_logs.service], config.decision_logs)
            if config.decision_logs
            else None
        )
        self.status_reporter = (
            StatusReporter(config.services[config.status_service], config.status_partition, self.status)
            if config.status_service
            else None
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        # Imported here: httptools is the `sidecar` extra, and this module is also
        # imported for as_json by code that never serves.
        try:
            import agents_sdk.sidecar.serving as serving
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ConfigError("warden sidecar needs httptools: pip install 'warden-agents-sdk[sidecar]'") from exc
        self._serving = serving
        self._server = serving.server(self._answer, read_timeout=read_timeout)
        self._thread: threading.Thread | None = None
        self._routes: dict[str, tuple[str, str, bool] | None] = {}
        self.freeze_heap = False  # gc.freeze() after each activation: see _settle_heap
        self._decision_ids = DecisionIds()
        self._repeats = RepeatAnswers()
        self._log_events = LogEvents(self.labels, config.bundle.name, lambda: self.backend.revision)
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.address: tuple[str, int] = self._bind

    def _bundle_client(self, bundle: BundleConfig) -> BundleClient:
        service = self.config.services[bundle.service]
        return BundleClient(
            service.url,
            bundle.resource,
            name=bundle.name,
            token=service.token,
            token_path=service.token_path,
            scheme=service.scheme,
            headers=service.headers,
            verification=bundle.verification,
            persist_dir=(Path(self.config.persistence_directory) / "bundles" / bundle.name) if bundle.persist else None,
            long_polling_timeout=bundle.long_polling_timeout,
            min_delay=bundle.min_delay,
            max_delay=bundle.max_delay,
            response_header_timeout=service.response_header_timeout,
            on_status=lambda _status: self._status_changed(),
            max_age=bundle.max_age,
        )

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
        self._server.should_exit = True  # checked every 0.1 s; stop() twice is fine
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
        loop = self._serving.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            sock = self._serving.listening_socket(*self._bind)
        except BaseException as exc:  # noqa: BLE001 - re-raised by start() in the caller's thread
            self._start_error = exc
            self._started.set()
            loop.close()
            return
        self.address = sock.getsockname()[:2]
        # Set once the loop runs, so a bundle activated from now on is compiled on this thread.
        # The socket already listens: connections queue until the server accepts them.
        loop.call_soon(self._started.set)
        try:
            loop.run_until_complete(self._server.serve(sockets=[sock]))
        finally:
            sock.close()
            loop.run_until_complete(loop.shutdown_asyncgens())
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
            self._settle_heap()
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def activate() -> None:
            try:
                self.backend.activate(bundle)
                self._settle_heap()
            except BaseException as exc:  # noqa: BLE001 - re-raised by done.result() in the bundle thread
                done.set_exception(exc)
            else:
                done.set_result(None)

        loop.call_soon_threadsafe(activate)
        done.result(timeout=120)

    def _settle_heap(self) -> None:
        # With freeze_heap (the `warden sidecar` process), the heap a bundle leaves (modules,
        # data, compiled policy: tens of thousands of objects) is moved out of the collector's
        # reach, so no full collection walks it between decisions (one took 370 ms under load).
        # Each activation first collects what the previous bundle left, then freezes again.
        if self.freeze_heap:
            gc.unfreeze()
            gc.collect()
            gc.freeze()

    def status(self) -> dict[str, Any]:
        """The sidecar's state in the shape of OPA's status API."""
        statuses: list[BundleStatus] = (
            self.bundles.statuses() if isinstance(self.bundles, BundleSet) else [self.bundles.status()]
        )
        ready = self.bundles.active is not None
        report: dict[str, Any] = {
            "labels": self.labels,
            "bundles": {status.name: status.as_opa() for status in statuses},
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

    def metrics_text(self) -> str:
        """``GET /metrics`` in Prometheus's text format: decisions answered again from the
        table of repeated answers, and the decision-log counters, read without waiting on
        the uploader (the event loop serves it)."""
        return (
            "# HELP warden_sidecar_repeated_answers_total Decisions answered from the table of repeated answers.\n"
            "# TYPE warden_sidecar_repeated_answers_total counter\n"
            f"warden_sidecar_repeated_answers_total {self._repeats.hits}\n"
        ) + log_metrics_text(self.decision_logs.counters() if self.decision_logs is not None else None)

    # -- HTTP -----------------------------------------------------------------------------

    def _answer(self, method: str, target: str, body: bytes, requested_by: str) -> tuple[int, bytes]:
        """The HTTP layer's handler (agents_sdk.sidecar.serving): status and JSON body."""
        try:
            return self._handle(method, target, body, requested_by)
        except Exception as exc:  # noqa: BLE001 - a bug here must not cost the agent its answer
            logger.exception("sidecar request %s %.200s failed", method, target)
            traceback.clear_frames(exc.__traceback__)  # a kept record must not hold this thread's engine
            status, answer = self._unexpected(target, exc)
            return status, encode(answer)

    def _handle(self, method: str, target: str, body: bytes, requested_by: str) -> tuple[int, bytes]:
        path, _, query = target.partition("?")
        params = urllib.parse.parse_qs(query, keep_blank_values=True) if query else _NO_PARAMS
        if path.startswith("/v1/data/") or path == "/v1/data":
            if method not in ("GET", "POST"):
                return 405, encode({"code": "method_not_allowed", "message": "use GET or POST"})
            decided = self._decide(method, path[len("/v1/data"):], params, body, requested_by)
            if type(decided) is tuple:
                return decided[0], encode(decided[1])
            assert isinstance(decided, Decided)
            return decided.encoded()
        if path == "/health" or path == "/health/":
            if method != "GET":
                return 405, encode({"code": "method_not_allowed", "message": "use GET"})
            if self.bundles.active is None:
                status = self.bundles.status()
                return 500, encode({"error": f"bundle {status.name} not activated"
                                     + (f": {status.message}" if status.message else "")})
            return 200, b"{}"
        if path == "/metrics":
            if method != "GET":
                return 405, encode({"code": "method_not_allowed", "message": "use GET"})
            return 200, self._serving.PrometheusText(self.metrics_text().encode("utf-8"))
        if path.startswith(("/access/v1/", "/.well-known/authzen-configuration")):
            # AuthZEN 1.0 (agents_sdk/sidecar/authzen.py), decided through _data like every caller.
            answer = authzen.handle(self, method, path, body, requested_by)
            if answer is not None:
                return answer[0], encode(answer[1])
        return 404, encode({"code": "resource_not_found", "message": f"{method} {path} is not served by warden sidecar"})

    def _unexpected(self, target: str, exc: Exception) -> tuple[int, Any]:
        path = target.partition("?")[0].rstrip("/")
        if path == "/v1/data/" + DECISION_QUERY.removeprefix("data.").replace(".", "/"):
            return 200, {"result": fail_closed_result("engine-error", f"The sidecar failed to decide: {type(exc).__name__}")}
        return 500, {"code": "internal_error", "message": f"the sidecar failed to answer: {type(exc).__name__}"}

    def _data(self, method: str, path: str, params: dict[str, list[str]], body: bytes, requested_by: str) -> tuple[int, Any]:
        """A Data API answer as a document (AuthZEN decides through this)."""
        decided = self._decide(method, path, params, body, requested_by)
        if type(decided) is tuple:
            return decided
        assert isinstance(decided, Decided)
        if decided.error is not None:
            return 500, {**decided.error, "decision_id": decided.decision_id}
        answer: dict[str, Any] = {"decision_id": decided.decision_id}
        if decided.result is not None:
            answer["result"] = as_json(decided.result)
        if decided.metrics:
            answer["metrics"] = {"timer_rego_query_eval_ns": decided.elapsed_ns}
        return 200, answer

    def _route(self, path: str) -> tuple[str, str, bool] | None:
        """(query, log path, is the Warden decision) of a data path, or None if refused;
        remembered for the few paths agents ask (a bounded table)."""
        route = self._routes.get(path, False)
        if route is not False:
            return route  # type: ignore[return-value]
        segments = [urllib.parse.unquote(s) for s in path.strip("/").split("/") if s]
        found = None
        if all(PATH_SEGMENT.match(s) for s in segments):
            query = "data" + "".join(f".{s}" for s in segments)
            found = (query, "/".join(segments), query == DECISION_QUERY)
        if len(self._routes) < 256:
            self._routes[path] = found
        return found

    def _decide(self, method: str, path: str, params: dict[str, list[str]], body: bytes,
                requested_by: str) -> Decided | tuple[int, Any]:
        """Decide a Data API request (and log it): the decision, or a refusal (status, document)."""
        route = self._route(path)
        if route is None:
            return 400, {"code": "invalid_parameter", "message": "unsupported data path: segments must be Rego identifiers"}
        query, log_path, is_decision = route
        repeatable = is_decision and method == "POST" and self._repeats.admits(body, self.backend)
        if repeatable and self.bundles.age_problem() is None and (repeat := self._repeats.get(body)) is not None:
            return self._decided_again(repeat, log_path, requested_by, "metrics" in params)
        has_input, input_value = False, None
        if method == "POST" and body.strip():
            try:
                document = json.loads(body)
            except (ValueError, RecursionError) as exc:
                return 400, {"code": "invalid_parameter", "message": f"body contains malformed input document: {_short(exc)}"}
            if not isinstance(document, dict):
                return 400, {"code": "invalid_parameter", "message": 'body must be {"input": …}'}
            if "input" in document:
                has_input, input_value = True, document["input"]
        elif "input" in params:
            try:
                has_input, input_value = True, json.loads(params["input"][0])
            except (ValueError, RecursionError) as exc:
                return 400, {"code": "invalid_parameter", "message": f"input parameter is not JSON: {_short(exc)}"}
        decision_id = self._decision_ids.next()
        problem = input_problem(input_value, root="/input") if has_input else None
        if problem is not None and not is_decision:
            return 400, {"code": "invalid_parameter", "message": problem}
        refusal = None
        registry = registry_of(self.backend.data)
        if problem is None and isinstance(input_value, dict):
            # The policy sees only a verified chain (input.delegation), never the raw one.
            raw_input = input_value
            input_value, _, refusal = delegation_input(input_value, registry, cache=self._chains)
            # An input with a chain, or an approval grant, is decided against the clock: never repeated.
            repeatable = repeatable and input_value is raw_input and not _presents_grant(input_value)
        else:
            repeatable = False
        started = time.perf_counter_ns()
        error = None
        stale = self.bundles.age_problem()
        result: Any
        if problem is not None:
            result = fail_closed_result("malformed-input", problem)
            has_input, input_value = False, None  # never logged: it cannot be stored
        elif stale is not None:
            repeatable = False
            result = fail_closed_result("stale-bundle", f"Every action is denied: {stale}") if is_decision else None
            if not is_decision:
                error = {"code": "internal_error", "message": stale}
        elif refusal is not None and is_decision:
            result = fail_closed_result(DELEGATION_REFUSED, refusal)
        elif is_decision and (schema_check := tool_args_violations(input_value, registry))[1]:
            # The catalog's argument schema, checked as the pack and the Guard check it.
            result = malformed_args_result(*schema_check)
        else:
            try:
                result = self.backend.evaluate(query, input_value if has_input else None)
            except LookupError:
                result = None  # no bundle yet: undefined, as in OPA
            except Exception as exc:  # noqa: BLE001 - RegoEngineError, or a value the engine's binding cannot convert
                repeatable = False
                message = str(exc) if isinstance(exc, RegoEngineError) else f"{type(exc).__name__}: {exc}"
                # Log the text, never the exception: a kept log record would keep its traceback
                # (CompiledPolicy.evaluate has already cleared the engine's frames in it).
                logger.log(logging.INFO if isinstance(exc, RegoEngineError) else logging.WARNING,
                           "evaluating %s failed: %s", query, message)
                result = None
                if is_decision:
                    result = fail_closed_result("engine-error", f"Policy evaluation failed: {message}")
                else:
                    error = {"code": "internal_error", "message": message}
        elapsed = time.perf_counter_ns() - started
        # Encoded once, for the answer and the decision log alike (Rego sets as OPA writes them).
        result_json = None if result is None else encode_result(result)
        if self.decision_logs is None and not (repeatable and has_input and error is None and result_json):
            return Decided(decision_id, result, result_json, error, elapsed, "metrics" in params)
        try:  # the event's input member: kept with a repeatable answer, logged with every one
            logs = has_input and self.decision_logs is not None
            logged_input = LogEvents.input_member(input_value, result) if logs else ""
        except (TypeError, ValueError) as exc:  # never the decision's problem: count it, as OPA counts drops
            if self.decision_logs is not None:
                self.decision_logs.drop(decision_id, exc)
        else:
            if repeatable and has_input and error is None and result_json is not None:
                self._repeats.put(body, Repeat(result, result_json, logged_input))
            if self.decision_logs is not None:
                event = self._log_events.event(decision_id, log_path, logged_input, result_json, error, elapsed,
                                               requested_by)
                self.decision_logs.log_encoded(event)
        return Decided(decision_id, result, result_json, error, elapsed, "metrics" in params)

    def _decided_again(self, repeat: Repeat, log_path: str, requested_by: str, metrics: bool) -> Decided:
        """A repeated request's answer (agents_sdk.sidecar.answers.RepeatAnswers), with a
        decision id and a decision-log event of its own."""
        decision_id = self._decision_ids.next()
        if self.decision_logs is not None:
            event = self._log_events.event(decision_id, log_path, repeat.logged_input, repeat.result_json, None, 0,
                                           requested_by)
            self.decision_logs.log_encoded(event)
        return Decided(decision_id, repeat.result, repeat.result_json, None, 0, metrics)


def _presents_grant(input_value: dict[str, Any]) -> bool:
    context = input_value.get("context")
    return isinstance(context, dict) and "approval_token" in context


def _short(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)[:200]


def run(config_path: str, addr: str = DEFAULT_ADDR) -> int:
    """Entry point of ``warden sidecar``: serve until interrupted. Raises ConfigError."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Decisions run on the event loop's thread; the upload and bundle threads run Python
    # between their I/O. A decision waits for the GIL at most one switch interval (5 ms by
    # default, the whole p99 budget): this process holds it to 1 ms.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    sidecar = Sidecar(load_config(config_path), addr=addr, decision_log_process=True)
    sidecar.freeze_heap = True  # process-wide: only where the sidecar is the whole process
    sidecar.serve_forever()
    return 0
