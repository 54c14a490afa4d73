"""The Guard and the sandbox together: decide first, then run sandboxed, then sign the run.

    agent = SandboxedAgent(guard)                       # permissions from the bundle's registry
    result = agent.python("print(sum(range(10)))")      # decided as tool "run_python"

    @guard.tool(sandbox=True)                           # the function returns the argv to run
    def shell(command: str) -> list[str]:
        return shlex.split(command)

The profile comes from the same signed bundle the decision is made with
(``data.warden_registry.agents[<agent>]``, see ``Permissions.from_registry``), so one
registry entry decides the policy and shapes the sandbox. Each run is recorded as a
``result`` record whose ``sandbox`` field holds the command, the profile's hash, the exit
status, the limits hit and the violations.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from agents_sdk.errors import ApprovalRequired, PolicyViolationError
from agents_sdk.guard.backends import DecisionBackend
from agents_sdk.guard.decision import Decision, raise_unless_allowed, result_payload
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from agents_sdk.sandbox.errors import SandboxError, SandboxProfileError
from agents_sdk.sandbox.permissions import Permissions
from agents_sdk.sandbox.runner import Sandbox, SandboxResult, run_violation

REGISTRY_ROOT = "warden_registry"


@runtime_checkable
class GuardLike(Protocol):
    """What this module needs of a Guard (``agents_sdk.guard.Guard``). Named here rather than
    imported: ``Guard.tool(sandbox=True)`` calls this module, which must not import it back."""

    @property
    def identity(self) -> AgentIdentity: ...
    @property
    def backend(self) -> DecisionBackend: ...
    @property
    def signer(self) -> ActionSigner | None: ...
    def build_input(self, tool: str, args: Mapping[str, Any] | None = None, **context: Any) -> dict[str, Any]: ...
    def decide(self, input: dict[str, Any]) -> Decision: ...
    def session_of(self, input: Mapping[str, Any]) -> str: ...


def registry_permissions(guard: GuardLike, tool: str | None = None) -> Permissions:
    """The sandbox permissions of ``guard``'s agent from the registry data its policy holds:
    the agent's profile, or the files and limits of ``tool``'s catalog entry when it names
    its own (``tools[<tool>].sandbox.profile``).

    Raises SandboxProfileError when the Guard's backend holds no registry data (an HTTP
    backend: pass ``permissions=`` explicitly) or the agent's entry has no sandbox profile.
    """
    policy = getattr(guard.backend, "policy", None)
    data = getattr(policy, "data", None)
    if not isinstance(data, Mapping):
        raise SandboxProfileError(
            "sandbox: the Guard's backend holds no bundle data (no active bundle, or a sidecar over "
            "HTTP); pass permissions= explicitly or use an EmbeddedBackend with a BundleClient"
        )
    registry = data.get(REGISTRY_ROOT) or {}
    entry = (registry.get("agents") or {}).get(guard.identity.name)
    if entry is None:
        raise SandboxProfileError(
            f"sandbox: the active bundle has no registry entry for agent {guard.identity.name!r} "
            "in this environment"
        )
    # A catalog entry may name the tool's own files and limits; hosts and commands stay the agent's.
    spec = (registry.get("tools") or {}).get(tool) if tool else None
    sandbox = spec.get("sandbox") if isinstance(spec, Mapping) else None
    if isinstance(sandbox, Mapping) and isinstance(sandbox.get("profile"), Mapping):
        entry = {**entry, "sandbox": sandbox["profile"]}
    return Permissions.from_registry(entry)


def run_governed(
    guard: GuardLike,
    tool: str,
    args: Mapping[str, Any],
    argv: Sequence[str] | Callable[[], Sequence[str]],
    *,
    permissions: Permissions | None = None,
    stdin: bytes | None = None,
) -> SandboxResult:
    """Decide ``tool(args)`` with ``guard``; if allowed, run ``argv`` in the agent's sandbox.

    ``argv`` may be a callable that builds the command; it is called only after an allow.
    Signs intent and decision (by the Guard) and a ``result`` record of the run. Raises
    PolicyViolationError on a deny, a command outside the profile, a refused egress
    request or a write outside ``file_write`` (the run's record is signed first), ApprovalRequired, and SandboxUnavailable
    or SandboxProfileError when no sandbox can be built (the command never runs unsandboxed).
    """
    # context.sandboxed: a catalog entry with sandbox.required is denied to any other caller.
    input = guard.build_input(tool, dict(args), sandboxed=True)
    decision = guard.decide(input)
    raise_unless_allowed(tool, dict(args), decision)
    session_id = guard.session_of(input)
    profile: Permissions | None = None
    command: tuple[str, ...] = ()
    try:
        profile = permissions if permissions is not None else registry_permissions(guard, tool)
        command = tuple(argv() if callable(argv) else argv)
        result = Sandbox(profile, raise_on_violation=False).run(command, stdin=stdin)
    except (PolicyViolationError, SandboxError) as exc:
        refused = {
            # A refused argv may hold what no record can (NUL, lone surrogates): keep its ascii form.
            "command": [arg if isinstance(arg, str) and arg.isprintable() else ascii(arg) for arg in command],
            "profile_hash": profile.profile_hash if profile is not None else None,
            "exit_status": None,
            "limits_hit": [],
            "violations": list(getattr(exc, "violations", ()))
            or [{"kind": "sandbox", "target": tool, "reason": str(exc)[:500]}],
        }
        _record(guard, session_id, tool, f"refused: {exc}", refused)
        raise
    _record(guard, session_id, tool, result.summary(), result.record())
    if result.violations:
        raise run_violation(result, tool=tool)
    return result


def _record(guard: GuardLike, session_id: str, tool: str, summary: str, run: dict[str, Any]) -> None:
    if guard.signer is not None:
        guard.signer.sign_record(session_id, "result", {**result_payload(tool, summary), "sandbox": run})


def sandboxed_tool(
    guard: GuardLike,
    function: Callable[..., Sequence[str]],
    tool: str,
    tool_args: Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]],
    *,
    permissions: Permissions | None = None,
) -> Callable[..., SandboxResult]:
    """What ``guard.tool(sandbox=True)`` returns: ``function`` builds the argv from the call's
    arguments, and the call returns the run's SandboxResult."""

    @functools.wraps(function)
    def wrapper(*call_args: Any, **call_kwargs: Any) -> SandboxResult:
        args = tool_args(call_args, call_kwargs)
        return run_governed(
            guard, tool, args, lambda: function(*call_args, **call_kwargs), permissions=permissions
        )

    return wrapper


def python_tool(
    guard: GuardLike, *, tool: str = "run_python", permissions: Permissions | None = None, max_chars: int = 8000
) -> Callable[[str], str]:
    """A code tool for any framework: ``run_python(code) -> str`` decides ``tool`` with
    ``{"code": code}``, runs the code sandboxed, signs the run, and returns the text the model
    reads: what the code printed and its exit status, or why the call was refused (a deny, a
    hold, a refused connection). SandboxUnavailable and SandboxProfileError are raised: they
    are the operator's to fix, not the model's."""
    agent = SandboxedAgent(guard, permissions=permissions)

    def run_python(code: str) -> str:
        """Run Python 3 code in an isolated sandbox (no network unless allowed, only the agent's
        files) and return what it printed."""
        try:
            result = agent.python(code, tool=tool)
        except (PolicyViolationError, ApprovalRequired) as exc:
            return f"refused: {exc}"
        text = (result.stdout + result.stderr).decode("utf-8", "replace")[:max_chars]
        notes = [f"exit status {result.exit_status}"] + [f"{limit} limit hit" for limit in result.limits_hit]
        return f"{text}\n[{'; '.join(notes)}]"

    run_python.__name__ = tool
    return run_python


class SandboxedAgent:
    """An agent whose code and shell tools run decided, sandboxed and signed.

    ``SandboxedAgent(guard)`` takes its permissions from the bundle's registry entry of the
    Guard's agent; ``permissions=Permissions(...)`` overrides them (for development or an
    HTTP backend). Other attributes are the base agent's.
    """

    def __init__(self, base_agent: GuardLike, *, permissions: Permissions | None = None):
        if not isinstance(base_agent, GuardLike):
            raise TypeError("base_agent: must be the agent's Guard (agents_sdk.guard.Guard)")
        self.base_agent = base_agent
        self.permissions = permissions

    def run(
        self,
        argv: Sequence[str],
        *,
        tool: str = "shell",
        args: Mapping[str, Any] | None = None,
        stdin: bytes | None = None,
    ) -> SandboxResult:
        """Decide ``tool`` (arguments ``{"command": <the command line>}`` unless given), then run
        ``argv`` in the sandbox. Raises as ``run_governed``."""
        if isinstance(argv, str):
            raise SandboxProfileError("argv: must be a list of strings, not one string; use shlex.split")
        call_args = dict(args) if args is not None else {"command": shlex.join(argv)}
        return run_governed(self.base_agent, tool, call_args, argv, permissions=self.permissions, stdin=stdin)

    def python(self, code: str, *, tool: str = "run_python", stdin: bytes | None = None) -> SandboxResult:
        """Decide ``tool`` with ``{"code": code}``, then run it with ``python3 -I`` in the sandbox."""
        if not isinstance(code, str):
            raise SandboxProfileError("code: must be a string of Python source")
        return self.run(["python3", "-I", "-c", code], tool=tool, args={"code": code}, stdin=stdin)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base_agent, name)
