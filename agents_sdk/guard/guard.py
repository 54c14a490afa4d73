"""``Guard``: decides an agent's tool calls before they run, and signs what it decided.

    guard = Guard(identity, EmbeddedBackend(bundle_client), environment="prod")
    decision = guard.check("file_delete", {"path": "/prod/x"}, session_id="s-1")

    @guard.tool
    def file_delete(path: str) -> None: ...   # a deny raises PolicyViolationError; it never runs

Every decision is ``data.warden.decision`` of the input DESIGN.md defines (agent,
action, context). The Guard fails closed: no active bundle, an engine error, an answer
that is not a decision, an unreachable sidecar, a timeout or an input the engine cannot
take (``malformed-input``) all give a deny whose reason says so.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar, overload

from agents_sdk.delegation import REFUSAL_RULE as DELEGATION_REFUSED
from agents_sdk.delegation import ChainCache, delegation_input, registry_of
from agents_sdk.engine.args_schema import malformed_args_result, tool_args_violations
from agents_sdk.engine.decision_cache import forget_encoding, remember_encoding
from agents_sdk.guard.backends import DecisionBackend
from agents_sdk.guard.decision import (
    Decision,
    decision_payload,
    error_summary,
    fail_closed,
    intent_payload,
    raise_unless_allowed,
    result_payload,
)
from agents_sdk.guard.inputs import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, encoded_input, input_problem, printable
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import MAX_SESSION_ID_LENGTH, ActionSigner, utc_timestamp

__all__ = ["Guard", "raise_unless_allowed"]

F = TypeVar("F", bound=Callable[..., Any])

# `type(x) is dict or isinstance(x, Mapping)` below: the ABC check runs Python code on every
# call of every governed tool; the usual plain dict skips it.
_scoped_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "warden_guard_context", default=None
)


class Guard:
    """Decides an agent's tool calls before they run.

    ``identity`` supplies ``input.agent`` (id and name = the agent's name, owner,
    scopes). ``environment`` and ``session_id`` are defaults for ``input.context``.
    ``timeout`` bounds each decision in seconds (default: the backend's own, 1 s for
    ``OPAHTTPBackend``, none for ``EmbeddedBackend``). With a ``signer``, each check signs an
    ``intent`` (arguments masked as the decision's ``obligations.mask`` says) and a
    ``decision`` record, and each call through ``@guard.tool`` a ``result`` record, in the
    session of the call (``session_id``; a new UUID per Guard if none is given).
    ``max_input_depth`` and ``max_input_bytes`` bound what reaches the engine (see
    ``agents_sdk.guard.inputs``); a larger input is a ``malformed-input`` deny.
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
        max_input_depth: int = DEFAULT_MAX_DEPTH,
        max_input_bytes: int = DEFAULT_MAX_BYTES,
        approvals: Any = None,
        on_approval: str = "raise",
        approval_timeout: float = 300.0,
    ):
        if on_approval not in ("raise", "wait"):
            raise ValueError(f"on_approval must be 'raise' or 'wait', not {on_approval!r}")
        self.identity = identity
        self.backend = backend
        self.environment = environment
        self.session_id = session_id
        self.signer = signer
        self.timeout = timeout
        self.max_input_depth = max_input_depth
        self.max_input_bytes = max_input_bytes
        # Human approval (agents_sdk.approvals, docs/approvals.md): an ApprovalClient files
        # held calls; "wait" long-polls up to approval_timeout s for the grant, then runs once.
        self.approvals = approvals
        self.on_approval = on_approval
        self.approval_timeout = approval_timeout
        self._agent = {
            "id": identity.name,
            "name": identity.name,
            "owner": identity.owner,
            "scopes": list(identity.scopes),
        }
        if signer is not None and self.session_id is None:
            self.session_id = str(uuid.uuid4())
        self._chains = ChainCache()

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
        scoped = _scoped_context.get()
        merged = {**scoped, **context} if scoped else context
        call_args: Any = dict(args) if (type(args) is dict or isinstance(args, Mapping)) else ({} if args is None else args)
        action: dict[str, Any] = {"type": "tool_call", "tool": tool, "args": call_args}
        server = merged.pop("server", None)
        if server is not None:
            action["server"] = server
        ctx: dict[str, Any] = {}
        if not merged:  # the usual call: the Guard's own session and environment, stamped now
            if self.session_id is not None:
                ctx["session_id"] = self.session_id
            if self.environment is not None:
                ctx["environment"] = self.environment
            ctx["time"] = utc_timestamp()
            return {"agent": dict(self._agent, scopes=list(self._agent["scopes"])), "action": action, "context": ctx}
        session_id = merged.pop("session_id", None) or self.session_id
        if session_id is not None:
            ctx["session_id"] = session_id
        environment = merged.pop("environment", None) or self.environment
        if environment is not None:
            ctx["environment"] = environment
        ctx["time"] = merged.pop("time", None) or utc_timestamp()
        on_behalf_of = merged.pop("on_behalf_of", None)
        if on_behalf_of is not None:
            ctx["on_behalf_of"] = [on_behalf_of] if isinstance(on_behalf_of, str) else _as_list(on_behalf_of)
        for key, value in merged.items():
            if value is not None:
                ctx[key] = value
        return {"agent": dict(self._agent, scopes=list(self._agent["scopes"])), "action": action, "context": ctx}

    # -- checks -----------------------------------------------------------------------

    def check(self, tool: str, args: Mapping[str, Any] | None = None, **context: Any) -> Decision:
        """Decide whether this agent may call ``tool`` with ``args`` now.

        Returns the Decision; never raises for a policy outcome, a backend failure or an
        input the engine cannot take (those are denies).
        """
        return self.decide(self.build_input(tool, args, **context))

    def decide(self, input: dict[str, Any]) -> Decision:
        """Decide a complete policy input (``build_input``'s shape), and sign the intent
        and the decision when the Guard has a signer.

        The input is checked first (``agents_sdk.guard.inputs``): invalid Unicode, NUL,
        non-JSON values, excessive depth or size give a ``malformed-input`` deny naming
        the field, and never reach the engine. Never raises for a policy outcome.
        """
        return self._decide(input)[0]

    def _decide(self, input: dict[str, Any]) -> tuple[Decision, str | None]:
        """``decide``, and the session the records were signed in (None without a signer)."""
        problem, text = self._checked(input)
        chain = _chain_of(input)
        verified = None
        if problem is not None:
            decision = fail_closed("malformed-input", problem)
        else:
            # A chain is verified here when the bundle is in process, else by the sidecar.
            registry = registry_of(getattr(self.backend, "data", None))
            checked = input
            input, verified, refusal = delegation_input(input, registry, cache=self._chains)
            # The catalog's argument schema, checked as the pack and `warden sidecar` check it.
            tool, violations = tool_args_violations(input, registry)
            if refusal is not None:
                decision = fail_closed(DELEGATION_REFUSED, refusal)
            elif violations:
                decision = Decision.from_result(malformed_args_result(tool, violations), None)
            elif text is None or input is not checked:
                raw, decision_id = self.backend.decide(input, timeout=self.timeout)
                decision = Decision.from_result(raw, decision_id)
            else:
                # The engine takes the text the check made: the input is encoded once.
                remember_encoding(input, text)
                try:
                    raw, decision_id = self.backend.decide(input, timeout=self.timeout)
                finally:
                    forget_encoding()
                decision = Decision.from_result(raw, decision_id)
        session_id = None
        if self.signer is not None:
            session_id = self.session_of(input, checked=problem is None)
            if problem is None:
                intent = intent_payload(input, decision)
                if verified is not None:  # the record carries the chain, so `warden audit verify` re-checks it
                    intent["delegation"] = {**verified.facts(), "token": chain}
            else:
                # The arguments cannot be signed as they are: record that a call was refused.
                intent = {"tool": _tool_name_of(input), "args": {}}
            # One spool write for both when the signer signs in the background; before any tool runs.
            self.signer.append_many(session_id, (("intent", intent), ("decision", decision_payload(decision))))
        return decision, session_id

    def session_of(self, input: Mapping[str, Any], *, checked: bool = False) -> str:
        """The session a decision of ``input`` is signed in: the input's ``session_id`` when it
        is a usable string, else the Guard's own. ``checked``: ``input_problem`` passed it."""
        context = input.get("context") if (type(input) is dict or isinstance(input, Mapping)) else None
        session_id = context.get("session_id") if (type(context) is dict or isinstance(context, Mapping)) else None
        if checked and type(session_id) is str:  # the check refuses an input whose session id is unusable
            return session_id
        if _session_id_problem(session_id) is None:
            return str(session_id)
        return self.session_id or str(uuid.uuid4())

    def input_problem(self, input: Any) -> str | None:
        """None when ``input`` may go to the engine, else why not (a JSON Pointer first)."""
        return self._checked(input)[0]

    def _checked(self, input: Any) -> tuple[str | None, str | None]:
        """``input_problem``'s answer, and the input's JSON text for the engine when the check
        made it (``agents_sdk.guard.inputs.encoded_input``: the usual input is never walked)."""
        if not (type(input) is dict or isinstance(input, Mapping)):
            return f"the input is a {type(input).__name__}, not an object with agent, action and context", None
        action = input.get("action")
        if not (type(action) is dict or isinstance(action, Mapping)):
            return "/action is missing or not an object", None
        tool = action.get("tool")
        if not isinstance(tool, str) or not tool:
            return "/action/tool: the tool name must be a non-empty string", None
        args = action.get("args")
        if not (type(args) is dict or isinstance(args, Mapping)):
            return f"/action/args is a {type(args).__name__}; tool arguments must be an object", None
        text = encoded_input(input, max_depth=self.max_input_depth, max_bytes=self.max_input_bytes)
        if text is None:
            problem = input_problem(input, max_depth=self.max_input_depth, max_bytes=self.max_input_bytes)
            if problem is not None:
                return problem, None
        context = input.get("context")
        if (type(context) is dict or isinstance(context, Mapping)) and "session_id" in context:
            # The decision is signed in this session: it must be a session id records can carry.
            problem = _session_id_problem(context["session_id"])
            if problem is not None:
                return f"/context/{problem}; use a UUID or another short printable id", None
        return None, text

    def enforce(self, tool: str, args: Mapping[str, Any] | None = None, **context: Any) -> Decision:
        """``check``, then raise unless the decision is allow.

        Raises PolicyViolationError ("<rule>: <message>") on a deny and ApprovalRequired
        (carrying tool, args and reasons) when a person must approve first.
        """
        input = self.build_input(tool, args, **context)
        decision, _ = self.resolve(input, self.decide(input))
        raise_unless_allowed(tool, dict(args or {}), decision)
        return decision

    def resolve(self, input: dict[str, Any], decision: Decision) -> tuple[Decision, dict[str, Any]]:
        """With an ApprovalClient: a held call goes through the approval workflow
        (``agents_sdk.approvals.obtain_approval``, which may raise ApprovalRequired,
        ApprovalDenied, ApprovalExpired or PolicyViolationError), and an allowed call under a
        presented ``approval_token`` consumes it. Otherwise returns ``decision`` unchanged."""
        if self.approvals is None:
            return decision, input
        from agents_sdk.approvals.flow import consume_presented_grant, obtain_approval

        if decision.requires_approval:
            return obtain_approval(self, input, decision)
        consume_presented_grant(self, input, decision)
        return decision, input

    def record_result(self, session_id: str, tool: str, summary: str) -> None:
        """Sign the ``result`` record of a call (does nothing without a signer)."""
        if self.signer is not None:
            self.signer.append_many(session_id, (("result", result_payload(tool, summary)),))

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
        sandbox: Any = False,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        func: F | None = None,
        *,
        name: str | None = None,
        arguments: Callable[..., Mapping[str, Any]] | None = None,
        summarize: Callable[[Any], str] | None = None,
        sandbox: Any = False,
    ) -> F | Callable[[F], F]:
        """Decorate a function so every call is decided first.

        ``@guard.tool`` or ``@guard.tool(name="file_delete")``. The tool's arguments are the
        call's bound arguments (defaults applied, ``self``/``cls`` left out), or what
        ``arguments(*args, **kwargs)`` returns. A deny raises PolicyViolationError and
        ``require_approval`` raises ApprovalRequired; in both cases the function does not
        run. With a signer, the call's result is recorded as ``summarize(result)`` (by
        default only the result's type; an exception as its type and message).
        Works on ``async def`` functions too.

        With ``sandbox=True`` (or ``sandbox=Permissions(...)``) the function returns the argv
        of a command, which runs under bubblewrap with the agent's registry profile after an
        allow; the call returns its SandboxResult and signs the run (docs/sandbox.md).
        """

        def decorate(function: F) -> F:
            tool_name = name or function.__name__
            signature = inspect.signature(function)

            fast = _plain_parameters(signature)

            def tool_args(call_args: tuple[Any, ...], call_kwargs: dict[str, Any]) -> dict[str, Any]:
                if arguments is not None:
                    return dict(arguments(*call_args, **call_kwargs))
                if fast is not None:
                    args = fast(call_args, call_kwargs)
                    if args is not None:
                        return args
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

            if sandbox:
                # Decision first, then the run under the agent's profile (agents_sdk.sandbox).
                from agents_sdk.sandbox.governed import sandboxed_tool

                profile = None if sandbox is True else sandbox
                return sandboxed_tool(self, function, tool_name, tool_args, permissions=profile)  # type: ignore[return-value]

            def before(call_args: tuple[Any, ...], call_kwargs: dict[str, Any]) -> str:
                args = tool_args(call_args, call_kwargs)
                input = self.build_input(tool_name, args)
                decision, session_id = self._decide(input)
                if self.approvals is not None:
                    decision, input = self.resolve(input, decision)
                    session_id = None
                raise_unless_allowed(tool_name, args, decision)
                # The result is signed in the session of the decision (without a signer: unused).
                return session_id if session_id is not None else self.session_of(input)

            def describe(result: Any) -> str:
                return summarize(result) if summarize is not None else f"returned {type(result).__name__}"

            if inspect.iscoroutinefunction(function):

                @functools.wraps(function)
                async def async_wrapper(*call_args: Any, **call_kwargs: Any) -> Any:
                    if self.approvals is not None and self.on_approval == "wait":
                        # The wait is a blocking long poll: off the event loop.
                        session_id = await asyncio.to_thread(before, call_args, call_kwargs)
                    else:
                        session_id = before(call_args, call_kwargs)
                    try:
                        result = await function(*call_args, **call_kwargs)
                    except Exception as exc:
                        self.record_result(session_id, tool_name, error_summary(exc))
                        raise
                    self.record_result(session_id, tool_name, describe(result))
                    return result

                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(function)
            def wrapper(*call_args: Any, **call_kwargs: Any) -> Any:
                session_id = before(call_args, call_kwargs)
                try:
                    result = function(*call_args, **call_kwargs)
                except Exception as exc:
                    self.record_result(session_id, tool_name, error_summary(exc))
                    raise
                self.record_result(session_id, tool_name, describe(result))
                return result

            return wrapper  # type: ignore[return-value]

        if func is not None:
            return decorate(func)
        return decorate

    def close(self) -> None:
        """Release the backend (stop the bundle refresher, close connections) and wait for the
        signer's background signing, if any, to catch up."""
        self.backend.close()
        if self.signer is not None:
            self.signer.flush()


_MISSING = object()


def _plain_parameters(
    signature: inspect.Signature,
) -> Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any] | None] | None:
    """For a function of plain named parameters (no ``*args``/``**kwargs``, no ``self``), a
    binder that gives what ``Signature.bind`` + ``apply_defaults`` would, several times faster
    (it is on every governed call), or None for a call it cannot bind: ``bind`` then raises
    the TypeError."""
    parameters = list(signature.parameters.values())
    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    if any(p.kind not in plain for p in parameters) or any(p.name in ("self", "cls") for p in parameters):
        return None
    names = tuple(p.name for p in parameters)
    positional = sum(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters)
    defaults = tuple(_MISSING if p.default is inspect.Parameter.empty else p.default for p in parameters)
    known = frozenset(names)

    def bind(call_args: tuple[Any, ...], call_kwargs: dict[str, Any]) -> dict[str, Any] | None:
        given = len(call_args)
        if given > positional or (
            call_kwargs and not (call_kwargs.keys() <= known and call_kwargs.keys().isdisjoint(names[:given]))
        ):
            return None
        result = dict(zip(names, call_args, strict=False))
        for name, default in zip(names[given:], defaults[given:], strict=True):
            value = call_kwargs.get(name, default) if call_kwargs else default
            if value is _MISSING:
                return None
            result[name] = value
        return result

    return bind


def _as_list(value: Any) -> Any:
    try:
        return list(value)
    except TypeError:
        return value  # left for the input check to refuse, naming the field


def _session_id_problem(session_id: object) -> str | None:
    """Why ``session_id`` cannot name a signed session (the records' rule), or None."""
    if not isinstance(session_id, str) or not session_id:
        return "session_id must be a non-empty string"
    if len(session_id) > MAX_SESSION_ID_LENGTH:
        return f"session_id must be at most {MAX_SESSION_ID_LENGTH} characters, not {len(session_id)}"
    if not session_id.isprintable() and any(unicodedata.category(c) in ("Cc", "Cs") for c in session_id):
        return "session_id must not contain control characters (such as U+0000) or unpaired surrogates"
    return None


def _chain_of(input: Any) -> Any:
    context = input.get("context") if (type(input) is dict or isinstance(input, Mapping)) else None
    return context.get("delegation") if (type(context) is dict or isinstance(context, Mapping)) else None


def _tool_name_of(input: Mapping[str, Any]) -> str:
    action = input.get("action") if isinstance(input, Mapping) else None
    tool = action.get("tool") if isinstance(action, Mapping) else None
    return printable(tool, 200) if isinstance(tool, str) and tool else "(malformed tool name)"
