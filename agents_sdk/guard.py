"""Policy enforcement for an agent's tool calls: ``Guard`` and its two backends.

    guard = Guard(identity, EmbeddedBackend(bundle_client), environment="prod")
    decision = guard.check("file_delete", {"path": "/prod/x"}, session_id="s-1")

    @guard.tool
    def file_delete(path: str) -> None: ...   # a deny raises PolicyViolationError; it never runs

Every decision is ``data.warden.decision`` of the input DESIGN.md defines (agent,
action, context). The Guard fails closed: no active bundle, an engine error, an answer
that is not a decision, an unreachable sidecar or a timeout all give a deny whose
reason says so.

Backends implement ``DecisionBackend``: ``EmbeddedBackend`` evaluates in process with
the Rego engine and the bundle a ``BundleClient`` keeps active; ``OPAHTTPBackend`` asks
an OPA (or ``warden sidecar``) over HTTP.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import http.client
import inspect
import json
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, overload

from agents_sdk.bundles import Bundle, BundleClient
from agents_sdk.engine import CompiledPolicy, RegoEngine
from agents_sdk.errors import ApprovalRequired, PolicyViolationError
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner

DECISION_QUERY = "data.warden.decision"
DECISION_PATH = "warden/decision"
EFFECTS = ("allow", "deny", "require_approval")
# The controls a fail-closed deny answers to: robustness against faults (AI Act art. 15(4)).
FAIL_CLOSED_CONTROLS = ("eu_ai_act.art15(4)",)

F = TypeVar("F", bound=Callable[..., Any])


# -- decisions --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    """Why a decision went the way it did: the policy rule's id, its message, and the
    compliance controls it implements."""

    rule: str
    message: str
    controls: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "message": self.message, "controls": list(self.controls)}


@dataclass(frozen=True)
class Decision:
    """The policy's answer about one action.

    ``effect`` is ``allow``, ``deny`` or ``require_approval``; ``allow`` is true only for
    ``allow``; ``reasons`` name the rules that decided; ``obligations`` are what the
    policy asks of the caller (``log``, ``mask``: JSON pointers into the input to mask in
    the audit log). ``decision_id`` is the sidecar's id when the decision came over HTTP.
    """

    effect: str
    allow: bool
    reasons: tuple[Reason, ...] = ()
    obligations: dict[str, Any] = field(default_factory=dict)
    decision_id: str | None = None

    @property
    def denied(self) -> bool:
        return self.effect == "deny"

    @property
    def requires_approval(self) -> bool:
        return self.effect == "require_approval"

    def as_dict(self) -> dict[str, Any]:
        """The decision in the policy's own JSON shape."""
        return {
            "allow": self.allow,
            "effect": self.effect,
            "reasons": [reason.as_dict() for reason in self.reasons],
            "obligations": copy.deepcopy(self.obligations),
        }

    @classmethod
    def from_result(cls, result: Any, decision_id: str | None = None) -> Decision:
        """Read a ``data.warden.decision`` result; anything that is not a well-formed
        decision becomes a deny (fail closed). Never raises."""
        if not isinstance(result, Mapping):
            return fail_closed("malformed-decision", f"The policy answered {type(result).__name__}, not a decision object")
        effect = result.get("effect")
        if effect not in EFFECTS:
            return fail_closed("malformed-decision", f"The policy answered an unknown effect {effect!r}")
        if result.get("allow") is not (effect == "allow"):
            return fail_closed("malformed-decision", f"The policy's allow {result.get('allow')!r} contradicts effect {effect!r}")
        reasons = []
        for raw in result.get("reasons") or ():
            if not isinstance(raw, Mapping):
                return fail_closed("malformed-decision", "The policy answered a reason that is not an object")
            controls = raw.get("controls") or ()
            reasons.append(
                Reason(
                    rule=str(raw.get("rule", "")),
                    message=str(raw.get("message", "")),
                    controls=tuple(str(c) for c in controls) if isinstance(controls, list | tuple) else (),
                )
            )
        obligations = result.get("obligations")
        return cls(
            effect=effect,
            allow=effect == "allow",
            reasons=tuple(reasons),
            obligations=dict(obligations) if isinstance(obligations, Mapping) else {},
            decision_id=decision_id,
        )


def fail_closed(rule: str, message: str) -> Decision:
    """The deny used when no trustworthy decision could be made."""
    return Decision(
        effect="deny",
        allow=False,
        reasons=(Reason(rule=rule, message=message, controls=FAIL_CLOSED_CONTROLS),),
        obligations={"log": True, "mask": []},
    )


def _fail_closed_result(rule: str, message: str) -> dict[str, Any]:
    return fail_closed(rule, message).as_dict()


# -- backends ---------------------------------------------------------------------------


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
        bundles: BundleClient | None = None,
        *,
        engine: RegoEngine | None = None,
        start: bool = True,
    ):
        self.engine = engine or RegoEngine()
        self.bundles = bundles
        self._policy: CompiledPolicy | None = None
        self._revision: str | None = None
        self._lock = threading.Lock()
        if bundles is not None:
            bundles.set_activator(self.activate)  # compile before the client makes it active
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
        return backend

    @property
    def revision(self) -> str | None:
        """The revision of the bundle decisions are made with, or None before the first one."""
        return self._revision

    @property
    def policy(self) -> CompiledPolicy | None:
        return self._policy

    def activate(self, bundle: Bundle) -> None:
        """Compile ``bundle`` and make it the policy. Raises RegoCompileError if it does not
        compile (the previous policy stays)."""
        policy = self.engine.compile(bundle.modules, bundle.data)
        with self._lock:
            self._policy, self._revision = policy, bundle.revision

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
            return _fail_closed_result("no-policy-bundle", "No policy bundle is active, so every action is denied"), None
        started = time.perf_counter()
        try:
            result = policy.decide(input)
        except Exception as exc:  # noqa: BLE001 - a panic or a value the engine cannot take: still a deny
            return _fail_closed_result("engine-error", f"Policy evaluation failed: {exc}"), None
        elapsed = time.perf_counter() - started
        # The engine cannot be interrupted; a decision later than the deadline is not trusted.
        if timeout is not None and elapsed > timeout:
            return _fail_closed_result(
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
            return _fail_closed_result("malformed-input", f"The input is not JSON: {exc}"), None
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
                return _fail_closed_result(
                    "decision-timeout", f"No decision from {self.url} within {timeout * 1000:.0f} ms"
                ), None
            except (http.client.HTTPException, OSError) as exc:
                self._drop_connection()
                # A kept-alive connection the server closed meanwhile: retry once on a new one.
                if reused and attempt == 1 and time.monotonic() < deadline:
                    continue
                return _fail_closed_result("engine-unreachable", f"Cannot reach the policy engine at {self.url}: {exc}"), None
            break
        if status != 200:
            return _fail_closed_result(
                "engine-error", f"The policy engine at {self.url} answered HTTP {status}: {raw[:200].decode('utf-8', 'replace')}"
            ), None
        try:
            answer = json.loads(raw)
        except ValueError:
            return _fail_closed_result("engine-error", f"The policy engine at {self.url} answered something that is not JSON"), None
        decision_id = answer.get("decision_id") if isinstance(answer, dict) else None
        if not isinstance(answer, dict) or "result" not in answer:
            return _fail_closed_result(
                "undefined-decision", f"{self._path} is undefined at {self.url}: is a Warden policy bundle active?"
            ), decision_id
        return answer["result"], decision_id

    def close(self) -> None:
        self._drop_connection()


# -- the guard --------------------------------------------------------------------------

_scoped_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("warden_guard_context", default=None)


def _rfc3339_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _unescape_pointer(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def masked(document: Any, pointers: Any, replacement: str = "****") -> Any:
    """A copy of ``document`` with the values at the JSON pointers ``pointers`` replaced."""
    result = copy.deepcopy(document)
    for pointer in pointers or ():
        if not isinstance(pointer, str) or not pointer.startswith("/"):
            continue
        parts = [_unescape_pointer(part) for part in pointer[1:].split("/")]
        node = result
        for part in parts[:-1]:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                node = None
                break
        last = parts[-1]
        if isinstance(node, dict) and last in node:
            node[last] = replacement
        elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = replacement
    return result


class Guard:
    """Decides an agent's tool calls before they run.

    ``identity`` supplies ``input.agent`` (id and name = the agent's name, owner,
    scopes). ``environment`` and ``session_id`` are defaults for ``input.context``.
    ``timeout`` bounds each decision in seconds (default: the backend's own, 1 s for
    ``OPAHTTPBackend``, none for ``EmbeddedBackend``). With a ``signer``, each check signs an
    ``intent`` (arguments masked as the decision's ``obligations.mask`` says) and a
    ``decision`` record, and each call through ``@guard.tool`` a ``result`` record, in the
    session of the call (``session_id``; a new UUID per Guard if none is given).
    """

    def __init__(
        self,
        identity: AgentIdentity,
        backend: DecisionBackend,
        *,
        environment: str | None = None,
        session_id: str | None = None,
        signer: ActionSigner | None = None,
        timeout: float | None = None,
    ):
        self.identity = identity
        self.backend = backend
        self.environment = environment
        self.session_id = session_id
        self.signer = signer
        self.timeout = timeout
        self._agent = {
            "id": identity.name,
            "name": identity.name,
            "owner": identity.owner,
            "scopes": list(identity.scopes),
        }
        if signer is not None and self.session_id is None:
            self.session_id = str(uuid.uuid4())

    # -- context ----------------------------------------------------------------------

    @contextmanager
    def context(self, **context: Any) -> Iterator[None]:
        """Add ``context`` (session_id, approval_token, on_behalf_of, counters, …) to every
        check made inside the ``with`` block, in this thread or task."""
        token = _scoped_context.set({**(_scoped_context.get() or {}), **context})
        try:
            yield
        finally:
            _scoped_context.reset(token)

    def build_input(self, tool: str, args: Mapping[str, Any] | None = None, **context: Any) -> dict[str, Any]:
        """The policy input (DESIGN.md) for calling ``tool`` with ``args``.

        ``context`` may hold ``session_id``, ``environment``, ``time`` (RFC 3339; now by
        default), ``on_behalf_of`` (list of agent ids), ``approval_token``, ``counters``
        and any other field the organisation's policies read; ``server`` (an MCP server
        name) goes to ``input.action.server``. None values are left out.
        """
        merged = {**(_scoped_context.get() or {}), **context}
        action: dict[str, Any] = {"type": "tool_call", "tool": tool, "args": dict(args or {})}
        server = merged.pop("server", None)
        if server is not None:
            action["server"] = server
        ctx: dict[str, Any] = {}
        session_id = merged.pop("session_id", None) or self.session_id
        if session_id is not None:
            ctx["session_id"] = session_id
        environment = merged.pop("environment", None) or self.environment
        if environment is not None:
            ctx["environment"] = environment
        ctx["time"] = merged.pop("time", None) or _rfc3339_now()
        on_behalf_of = merged.pop("on_behalf_of", None)
        if on_behalf_of is not None:
            ctx["on_behalf_of"] = [on_behalf_of] if isinstance(on_behalf_of, str) else list(on_behalf_of)
        for key, value in merged.items():
            if value is not None:
                ctx[key] = value
        return {"agent": dict(self._agent, scopes=list(self._agent["scopes"])), "action": action, "context": ctx}

    # -- checks -----------------------------------------------------------------------

    def check(self, tool: str, args: Mapping[str, Any] | None = None, **context: Any) -> Decision:
        """Decide whether this agent may call ``tool`` with ``args`` now.

        Returns the Decision; never raises for a policy outcome or a backend failure
        (those are denies). With a signer, raises SigningError or CanonicalJSONError if
        the intent cannot be signed (e.g. the arguments are not JSON).
        """
        input = self.build_input(tool, args, **context)
        return self._decide(input)

    def _decide(self, input: dict[str, Any]) -> Decision:
        if not isinstance(input["action"]["tool"], str) or not input["action"]["tool"]:
            decision = fail_closed("malformed-input", "The tool name must be a non-empty string")
        else:
            raw, decision_id = self.backend.decide(input, timeout=self.timeout)
            decision = Decision.from_result(raw, decision_id)
        if self.signer is not None:
            session_id = input["context"].get("session_id") or self.session_id
            shown = masked(input, decision.obligations.get("mask"))
            self.signer.sign_record(session_id, "intent", {"tool": input["action"]["tool"], "args": shown["action"]["args"]})
            payload: dict[str, Any] = {"effect": decision.effect, "reasons": [r.as_dict() for r in decision.reasons]}
            if decision.decision_id:
                payload["decision_id"] = decision.decision_id
            self.signer.sign_record(session_id, "decision", payload)
        return decision

    def enforce(self, tool: str, args: Mapping[str, Any] | None = None, **context: Any) -> Decision:
        """``check``, then raise unless the decision is allow.

        Raises PolicyViolationError ("<rule>: <message>") on a deny and ApprovalRequired
        (carrying tool, args and reasons) when a person must approve first.
        """
        decision = self.check(tool, args, **context)
        _raise_unless_allowed(tool, dict(args or {}), decision)
        return decision

    # -- the decorator ----------------------------------------------------------------

    @overload
    def tool(self, func: F) -> F: ...

    @overload
    def tool(
        self,
        func: None = None,
        *,
        name: str | None = None,
        arguments: Callable[..., Mapping[str, Any]] | None = None,
        summarize: Callable[[Any], str] | None = None,
    ) -> Callable[[F], F]: ...

    def tool(self, func=None, *, name=None, arguments=None, summarize=None):
        """Decorate a function so every call is decided first.

        ``@guard.tool`` or ``@guard.tool(name="file_delete")``. The tool's arguments are the
        call's bound arguments (defaults applied, ``self``/``cls`` left out), or what
        ``arguments(*args, **kwargs)`` returns. A deny raises PolicyViolationError and
        ``require_approval`` raises ApprovalRequired; in both cases the function does not
        run. With a signer, the call's result is recorded as ``summarize(result)`` (by
        default only the result's type; an exception as its type and message).
        Works on ``async def`` functions too.
        """

        def decorate(function: F) -> F:
            tool_name = name or function.__name__
            signature = inspect.signature(function)

            def tool_args(call_args: tuple, call_kwargs: dict) -> dict[str, Any]:
                if arguments is not None:
                    return dict(arguments(*call_args, **call_kwargs))
                bound = signature.bind(*call_args, **call_kwargs)
                bound.apply_defaults()
                result: dict[str, Any] = {}
                for param_name, value in bound.arguments.items():
                    kind = signature.parameters[param_name].kind
                    if param_name in ("self", "cls") and kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
                        continue
                    if kind is inspect.Parameter.VAR_KEYWORD:
                        result.update(value)
                    elif kind is inspect.Parameter.VAR_POSITIONAL:
                        result[param_name] = list(value)
                    else:
                        result[param_name] = value
                return result

            def before(call_args: tuple, call_kwargs: dict) -> tuple[dict[str, Any], str | None]:
                args = tool_args(call_args, call_kwargs)
                input = self.build_input(tool_name, args)
                decision = self._decide(input)
                _raise_unless_allowed(tool_name, args, decision)
                return args, input["context"].get("session_id")

            def record_result(session_id: str | None, outcome: str) -> None:
                if self.signer is not None and session_id is not None:
                    self.signer.sign_record(session_id, "result", {"summary": outcome})

            def describe(result: Any) -> str:
                return summarize(result) if summarize is not None else f"returned {type(result).__name__}"

            if inspect.iscoroutinefunction(function):

                @functools.wraps(function)
                async def async_wrapper(*call_args: Any, **call_kwargs: Any) -> Any:
                    _, session_id = before(call_args, call_kwargs)
                    try:
                        result = await function(*call_args, **call_kwargs)
                    except Exception as exc:
                        record_result(session_id, f"raised {type(exc).__name__}: {exc}"[:500])
                        raise
                    record_result(session_id, describe(result))
                    return result

                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(function)
            def wrapper(*call_args: Any, **call_kwargs: Any) -> Any:
                _, session_id = before(call_args, call_kwargs)
                try:
                    result = function(*call_args, **call_kwargs)
                except Exception as exc:
                    record_result(session_id, f"raised {type(exc).__name__}: {exc}"[:500])
                    raise
                record_result(session_id, describe(result))
                return result

            return wrapper  # type: ignore[return-value]

        if func is not None:
            return decorate(func)
        return decorate

    def close(self) -> None:
        """Release the backend (stop the bundle refresher, close connections)."""
        self.backend.close()


def _raise_unless_allowed(tool: str, args: dict[str, Any], decision: Decision) -> None:
    if decision.effect == "allow":
        return
    first = decision.reasons[0] if decision.reasons else Reason("default-deny", "No policy rule allows this action")
    if decision.effect == "require_approval":
        raise ApprovalRequired(
            f"{tool} requires approval: {first.rule}: {first.message}",
            tool=tool,
            args=args,
            reasons=decision.reasons,
            decision=decision,
        )
    raise PolicyViolationError(f"{first.rule}: {first.message}", decision=decision, tool=tool)
