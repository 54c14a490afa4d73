"""A registry change reloads data, never the policy (issue #20): regorus keeps the compiled VM
program of a policy revision and gives it the new data, encoded incrementally
(agents_sdk.engine.data_json), and still decides exactly as its interpreter does."""

from __future__ import annotations

import json
import math

import pytest

from agents_sdk.bundles.delta import apply_patch
from agents_sdk.engine import RegoEngine, data_json
from agents_sdk.engine.data_json import DataEncoder
from agents_sdk.tests.signed_bundles import library_modules, registry

QUERY = "data.warden.decision"


def request(agent: str, tool: str = "ticket_read", args: dict | None = None) -> dict:
    return {
        "agent": {"id": agent, "name": agent, "owner": "alice@example.com", "scopes": ["read:tickets", "write:files"]},
        "action": {"type": "tool_call", "tool": tool, "args": args if args is not None else {"id": 7}},
        "context": {"session_id": "s-1", "environment": "prod", "time": "2026-01-01T00:00:00Z"},
    }


def count_encodes(monkeypatch) -> list:
    """The values data_json's encoder is handed from now on (what an encode had to redo)."""
    encoded: list = []
    real = data_json._ENCODER

    class Counting:
        def encode(self, value):
            encoded.append(value)
            return real.encode(value)

    monkeypatch.setattr(data_json, "_ENCODER", Counting())
    return encoded


def status_of(name: str, status: str) -> list[dict]:
    return [{"op": "upsert", "path": f"/warden_registry/agents/{name}/status", "value": status}]


def test_a_data_change_keeps_the_compiled_vm_and_decides_with_the_new_data():
    policy = RegoEngine("regorus").compile(library_modules(), registry(**{"bot-a": "active", "bot-b": "active"}))
    assert policy.decide(request("bot-a"))["effect"] == "allow"
    session = policy._session_of_this_thread()
    vm = session._vms[QUERY]
    assert vm is not None and session.use_vm  # the pack decides on the VM

    data = apply_patch(policy.data, status_of("bot-a", "suspended"))
    policy.set_data(data, copied=False)
    denied = policy.decide(request("bot-a"))
    assert denied["effect"] == "deny" and denied["reasons"], denied
    assert policy.decide(request("bot-b"))["effect"] == "allow"
    assert policy._session_of_this_thread() is session and session._vms[QUERY] is vm  # not recompiled

    policy.set_data(apply_patch(data, status_of("bot-a", "active")), copied=False)
    assert policy.decide(request("bot-a"))["effect"] == "allow"  # the cached deny was dropped too
    assert session._vms[QUERY] is vm


def test_the_reused_vm_agrees_with_the_interpreter_across_successive_changes(monkeypatch):
    modules = library_modules()
    data = registry(**{f"bot-{i}": "active" for i in range(6)})
    policy = RegoEngine("regorus").compile(modules, data)
    changes = [
        status_of("bot-1", "suspended"),
        [{"op": "remove", "path": "/warden_registry/agents/bot-2"}],
        [{"op": "upsert", "path": "/warden_registry/agents/bot-new", "value": {"status": "active", "scopes": ["read:tickets"]}}],
        [{"op": "upsert", "path": "/warden_registry/tools/ticket_read", "value": {"scopes": ["write:files"]}}],
        [{"op": "replace", "path": "/warden_registry/agents/bot-3/scopes", "value": []}],
        status_of("bot-1", "active"),
    ]
    agents = [*(f"bot-{i}" for i in range(6)), "bot-new", "support-bot", "nobody"]
    inputs = [request(agent, tool) for agent in agents for tool in ("ticket_read", "file_delete")]
    for change in [[], *changes]:
        data = apply_patch(data, change) if change else data
        policy.set_data(data, copied=False)
        vm_answers = [policy.decide(item) for item in inputs]
        assert policy._session_of_this_thread().use_vm
        with monkeypatch.context() as env:
            env.setenv("REGORUS_NO_RVM", "1")
            interpreted = RegoEngine("regorus").compile(modules, data)
            assert not interpreted._session_of_this_thread().use_vm
            assert vm_answers == [interpreted.decide(item) for item in inputs], change
    effects = {item["agent"]["id"]: policy.decide(item)["effect"] for item in inputs if item["action"]["tool"] == "ticket_read"}
    assert effects["bot-2"] == "deny" and effects["bot-1"] == "allow" and effects["bot-new"] == "deny"  # ticket_read now needs write:files


def changes_of(data: dict) -> list[list[dict]]:
    return [
        status_of("a", "suspended"),
        [{"op": "upsert", "path": "/warden_registry/agents/z", "value": {"status": "active", "n": [1, 2.5, None]}}],
        [{"op": "remove", "path": "/warden_registry/agents/b"}],
        [{"op": "upsert", "path": "/warden_registry/tools/t", "value": {"scopes": ["é", "\u2028", "\ud800"]}}],
        [{"op": "remove", "path": "/warden_registry/agents/a"}, {"op": "upsert", "path": "/warden_registry/agents/a", "value": {}}],
        [{"op": "upsert", "path": "/other", "value": {"deep": {"er": {"est": {"x": 1}}}}}],
        [{"op": "upsert", "path": "/other/deep/er/est/x", "value": 2}],
        [{"op": "remove", "path": "/warden_registry/agents/z"}, {"op": "remove", "path": "/warden_registry/agents/a"}],
    ]


def test_the_incremental_text_is_json_dumps_of_each_successive_document():
    data = {"warden_registry": {"agents": {"a": {"status": "active"}, "b": {"status": "active"}}, "tools": {}}, "n": 1}
    encoder = DataEncoder()
    assert encoder.encode(data) == json.dumps(data)
    for change in changes_of(data):
        data = apply_patch(data, change)
        assert encoder.encode(data) == json.dumps(data), change
    many = {"warden_registry": {"agents": {f"a{i}": {"status": "active"} for i in range(20)}}}
    assert encoder.encode(many) == json.dumps(many)
    many = json.loads(json.dumps(many))  # a snapshot: equal, but new objects throughout
    assert encoder.encode(many) == json.dumps(many)
    many = apply_patch(many, status_of("a3", "suspended"))
    assert encoder.encode(many) == json.dumps(many)
    other = {"x": [1, {"y": 2}], "": {"": {"": {"": None}}}}
    assert encoder.encode(other) == json.dumps(other)  # an unrelated document
    assert encoder.encode(data) == json.dumps(data)


def test_keys_json_converts_and_documents_it_refuses_match_json_dumps():
    encoder = DataEncoder()
    converted = {"top": {1: "one", False: "f", None: "n", 2.5: "x"}}
    assert encoder.encode(converted) == json.dumps(converted)
    loop: dict = {"a": {}}
    loop["a"]["b"] = loop
    with pytest.raises(ValueError):
        encoder.encode(loop)
    with pytest.raises(TypeError):
        encoder.encode({"a": {"b": object()}})
    assert encoder.encode({"nan": {"x": math.nan}}) == json.dumps({"nan": {"x": math.nan}})  # regorus refuses it later


def test_one_change_among_many_agents_re_encodes_that_agent_only(monkeypatch):
    data = {"warden_registry": {"agents": {f"agent-{i}": {"status": "active", "scopes": ["s"]} for i in range(2000)}, "tools": {}}}
    encoder = DataEncoder()
    encoder.encode(data)
    encoded = count_encodes(monkeypatch)
    for change in (
        status_of("agent-7", "suspended"),
        [{"op": "upsert", "path": "/warden_registry/agents/agent-new", "value": {"status": "active"}}],
        [{"op": "remove", "path": "/warden_registry/agents/agent-9"}],
    ):
        encoded.clear()
        data = apply_patch(data, change)
        assert encoder.encode(data) == json.dumps(data)
        # The changed agent (its key and its value), and the path down to it: never the registry.
        assert len(encoded) <= 6, [str(value)[:40] for value in encoded]


def test_what_a_new_document_no_longer_holds_is_released():
    import gc
    import weakref

    class Agents(dict):  # a dict that can be weakly referenced
        pass

    agents = Agents({f"agent-{i}": {"status": "active"} for i in range(3)})
    released = weakref.ref(agents)
    encoder = DataEncoder()
    encoder.encode({"warden_registry": {"agents": agents, "tools": {"t": {}}}})
    kept = {"t": {"scopes": []}}
    encoder.encode({"warden_registry": {"agents": {}, "tools": kept}})
    del agents
    gc.collect()
    assert released() is None
    again = {"warden_registry": {"agents": {"x": {}}, "tools": kept}}
    assert encoder.encode(again) == json.dumps(again)


def test_where_the_vm_decides_the_interpreter_holds_no_copy_of_the_data_until_it_is_used():
    # A 100,000-agent registry takes ~170 MiB in regorus' interpreter as in its VM: after the
    # compile check, only the VM keeps one; a fallback loads the data it needs, current.
    policy = RegoEngine("regorus").compile(library_modules(), registry(**{"bot-a": "active"}))
    session = policy._session_of_this_thread()
    assert session.use_vm and session._pending_data is session._data  # unloaded after the check
    assert policy.decide(request("bot-a"))["effect"] == "allow"  # the VM decides
    assert session._pending_data is not None

    reasons = {r["rule"] for r in policy.evaluate("data.warden.deny", request("bot-a"))}  # the interpreter
    assert reasons == set() and session._pending_data is None  # loaded for that fallback
    policy.set_data(apply_patch(policy.data, status_of("bot-a", "suspended")), copied=False)
    assert policy.decide(request("bot-a"))["effect"] == "deny"
    assert session._pending_data is not None  # the old copy was dropped with the change
    reasons = {r["rule"] for r in policy.evaluate("data.warden.deny", request("bot-a"))}
    assert reasons == {"agent-not-active"}  # the fallback reads the new data, never the old


def test_upper_levels_keep_no_second_text_of_the_objects_below_them():
    agents = {f"agent-{i}": {"status": "active"} for i in range(50)}
    data = {"warden_registry": {"agents": agents, "environment": "prod", "approvals_consumed": ["g1"]}, "n": 1}
    encoder = DataEncoder()
    assert encoder.encode(data) == json.dumps(data)
    root, registry_level = encoder._states[()], encoder._states[("warden_registry",)]
    assert root[2] == ["", '"n": 1']  # the registry's text is made from its own state
    assert registry_level[2] == ["", '"environment": "prod"', '"approvals_consumed": ["g1"]']
    assert len(encoder._states[("warden_registry", "agents")][2]) == 50  # each agent's text, once
    for change in (
        [{"op": "replace", "path": "/warden_registry/environment", "value": "staging"}],
        status_of("agent-3", "suspended"),
        [{"op": "upsert", "path": "/n", "value": {"nested": {"x": [1]}}}],
        [{"op": "remove", "path": "/warden_registry/agents"}],
    ):
        data = apply_patch(data, change)
        assert encoder.encode(data) == json.dumps(data), change


def test_the_first_delta_after_a_bundle_compiles_re_encodes_the_changed_agent_only(monkeypatch):
    """EmbeddedBackend compiles a bundle's data as is (no deep copy): the data patched from it
    by a delta then shares its unchanged agents with what the engine encoded. With a copy, the
    first delta after every snapshot re-encoded all of them (seconds at 100,000 agents)."""
    from agents_sdk.bundles.archive import Bundle
    from agents_sdk.guard.backends import EmbeddedBackend

    agents = {f"agent-{i:04d}": "active" for i in range(1500)}
    snapshot = Bundle(revision="r1", roots=("",), manifest={}, modules=library_modules(), data=registry(**agents),
                      files=(), archive=b"")
    backend = EmbeddedBackend()
    backend.activate(snapshot)
    assert backend.policy._data is snapshot.data  # the parsed bundle's data, not a copy of it
    assert backend.decide(request("agent-0007"))[0]["effect"] == "allow"
    encoded = count_encodes(monkeypatch)
    delta = Bundle(revision="r2", roots=("",), manifest={}, modules=snapshot.modules,
                   data=apply_patch(snapshot.data, status_of("agent-0007", "suspended")), files=(), archive=b"", delta=True)
    backend.activate(delta)
    decision = backend.decide(request("agent-0007"))[0]
    assert decision["effect"] == "deny"
    assert len(encoded) <= 6, [str(value)[:40] for value in encoded]
