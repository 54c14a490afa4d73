"""The decision playground: what an environment's active bundle decides for an input,
evaluated in-process with the embedded engine. Nothing is recorded: no audit event,
no decision log, no change log entry."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from agents_sdk.engine import CompiledPolicy, RegoEngine
from controlplane.bundles import archive
from controlplane.bundles.models import Bundle, Environment
from controlplane.core.exceptions import InvalidInput
from controlplane.identity.models import Agent

MAX_DEPTH = 32
PLAYGROUND_SESSION_ID = "playground"
# Bundles are immutable, so a compiled policy can be reused for as long as it is kept.
_CACHE_SIZE = 8
_compiled: OrderedDict[str, CompiledPolicy] = OrderedDict()
_compiled_lock = threading.Lock()
_engine = RegoEngine()


def _policy_of(bundle: Bundle) -> CompiledPolicy:
    key = str(bundle.pk)
    with _compiled_lock:
        if key in _compiled:
            _compiled.move_to_end(key)
            return _compiled[key]
    files = archive.read_tar_gz(bytes(bundle.archive))
    modules = {name: content.decode("utf-8") for name, content in files.items() if name.endswith(".rego")}
    data = archive_data(files)
    policy = _engine.compile(modules, data)
    with _compiled_lock:
        _compiled[key] = policy
        while len(_compiled) > _CACHE_SIZE:
            _compiled.popitem(last=False)
    return policy


def archive_data(files: dict[str, bytes]) -> dict:
    """The bundle's data documents: data.json at the root and under any directory."""
    data: dict = {}
    for name, content in files.items():
        if name != "data.json" and not name.endswith("/data.json"):
            continue
        target = data
        for part in [p for p in name.split("/")[:-1] if p]:
            target = target.setdefault(part, {})
        target.update(json.loads(content))
    return data


def check_json_value(value: Any, *, field: str, depth: int = 0) -> None:
    """Refuse what the engine cannot take or no record could keep: deep nesting, NUL and strings
    that are not valid UTF-8 (lone surrogates), naming the field. (The API's JSON parser refuses
    most of this first; the playground checks again so it never depends on the parser.)"""
    if depth > MAX_DEPTH:
        raise InvalidInput(f"nested deeper than {MAX_DEPTH} levels", field=field)
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput("must not contain the NUL character (U+0000); remove it", field=field)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput("contains a lone surrogate; send valid Unicode text", field=field) from exc
    elif isinstance(value, dict):
        for key, item in value.items():
            check_json_value(key, field=field, depth=depth + 1)
            check_json_value(item, field=field, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json_value(item, field=field, depth=depth + 1)


def decision_input(agent: Agent, *, environment: Environment, tool: str, args: dict, context: dict) -> dict:
    """The policy input the SDK's Guard would send for this call (DESIGN.md's contract)."""
    action: dict[str, Any] = {"type": "tool_call", "tool": tool, "args": args}
    extra = dict(context)
    server = extra.pop("server", None)
    if server is not None:
        action["server"] = server
    ctx = {
        "session_id": PLAYGROUND_SESSION_ID,
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        **extra,
        "environment": environment.name,
    }
    agent_input = {"id": agent.name, "name": agent.name, "owner": agent.owner_email, "scopes": list(agent.scopes)}
    return {"agent": agent_input, "action": action, "context": ctx}


def dry_run(environment: Environment, *, agent: Agent, tool: str, args: dict, context: dict) -> dict:
    """Decide `tool(args)` for `agent` with the environment's active bundle; record nothing."""
    bundle = environment.active_bundle
    if bundle is None:
        raise InvalidInput(
            f"environment {environment.name!r} has no active bundle; publish policies to it first",
            field="environment",
        )
    check_json_value(args, field="args")
    check_json_value(context, field="context")
    policy_input = decision_input(agent, environment=environment, tool=tool, args=args, context=context)
    decision = _policy_of(bundle).decide(policy_input)
    return {
        "environment": environment.name,
        "revision": bundle.revision,
        "input": policy_input,
        "decision": decision,
    }
