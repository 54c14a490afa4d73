"""Every distinct bundle the test suite built (recorded with WARDEN_RECORD_BUNDLES, see
agents_sdk/engine/recorded_bundles.py) compiles under real OPA exactly when it compiles
under regorus. Runs in `nox -s opa-oracle`; skips elsewhere or when nothing was recorded."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from agents_sdk.engine import RegoEngine
from agents_sdk.engine.errors import RegoCompileError
from agents_sdk.engine.recorded_bundles import ENV

if os.environ.get("WARDEN_OPA_ORACLE") == "1":
    import opa_bindings  # noqa: F401  (the oracle session must have real OPA)
else:
    pytest.importorskip("opa_bindings")


def verdict(engine: str, modules: dict, data: dict) -> str:
    try:
        RegoEngine(engine).compile(modules, data)
    except RegoCompileError:
        return "refused"
    return "compiled"


def test_every_recorded_bundle_gets_the_same_verdict_from_real_opa_and_regorus():
    directory = os.environ.get(ENV)
    recorded = sorted(Path(directory).glob("*.json")) if directory else []
    if not recorded:
        pytest.skip(f"no bundles recorded ({ENV} unset or empty): run the test suites with it set first")
    started = time.perf_counter()
    disagreements, verdicts = [], {"compiled": 0, "refused": 0}
    for path in recorded:
        bundle = json.loads(path.read_text("utf-8"))
        opa = verdict("opa", bundle["modules"], bundle["data"])
        ours = verdict("regorus", bundle["modules"], bundle["data"])
        verdicts[opa] += 1
        if opa != ours:
            disagreements.append(f"{path.name}: OPA {opa}, regorus {ours} ({sorted(bundle['modules'])[:5]})")
    print(f"\nrecorded bundles: {len(recorded)} ({verdicts}), {time.perf_counter() - started:.1f} s, "
          f"{len(disagreements)} disagreements")
    assert not disagreements, "\n".join(disagreements)


def test_real_opa_decides_as_regorus_on_a_served_snapshot_and_the_deltas_after_it():
    """A served snapshot, then delta bundles as the control plane makes them (the changed
    agents upserted whole, removed ones removed). The OPA library in this environment takes
    only modules and data (its data is deep-merged, conflicting values refused): it cannot
    read a bundle archive nor apply a delta's patch. So the SDK reads the archives and
    applies each patch (agents_sdk.bundles), real OPA compiles the resulting modules and data
    afresh, and regorus takes the data as a sidecar does: compiled once, then set_data."""
    from agents_sdk.bundles.archive import parse_bundle, read_archive
    from agents_sdk.bundles.delta import apply_delta
    from agents_sdk.tests.signed_bundles import build_bundle, pack, registry

    roots = ["warden", "warden_registry"]
    snapshot = build_bundle(None, data=registry(**{f"bot-{i}": "active" for i in range(8)}), revision="rev-1", roots=roots)
    active = parse_bundle(snapshot.archive)
    ours = RegoEngine("regorus").compile(active.modules, active.data)
    suspended = {**active.data["warden_registry"]["agents"]["support-bot"], "status": "suspended"}
    patches = [
        [{"op": "upsert", "path": "/warden_registry/agents/support-bot", "value": suspended}],
        [{"op": "remove", "path": "/warden_registry/agents/bot-1"},
         {"op": "upsert", "path": "/warden_registry/agents/bot-new", "value": {"status": "active", "scopes": ["read:tickets"]}}],
        [{"op": "upsert", "path": "/warden_registry/agents/support-bot/status", "value": "active"},
         {"op": "upsert", "path": "/warden_registry/agents/bot-2/status", "value": "suspended"}],
    ]
    agents = ["support-bot", *(f"bot-{i}" for i in range(8)), "bot-new", "nobody"]
    inputs = [
        {
            "agent": {"id": agent, "name": agent, "owner": "alice@example.com", "scopes": ["read:tickets", "write:files"]},
            "action": {"type": "tool_call", "tool": tool, "args": args},
            "context": {"session_id": "s-1", "environment": "prod", "time": "2026-01-01T00:00:00Z"},
        }
        for agent in agents
        for tool, args in (("ticket_read", {"id": 7}), ("file_delete", {"path": "/prod/x"}), ("http_request", {"url": "https://a.example.com/"}))
    ]
    effects = []
    for stage, patch in enumerate([None, *patches], start=1):
        if patch is not None:
            manifest = {"revision": f"rev-{stage}", "roots": roots}
            archive = pack({".manifest": json.dumps(manifest).encode(), "patch.json": json.dumps({"data": patch}).encode()})
            active = apply_delta(active, read_archive(archive), archive)
            ours.set_data(active.data, copied=False)
        opa = RegoEngine("opa").compile(active.modules, active.data)
        for item in inputs:
            assert opa.decide(item) == ours.decide(item), (active.revision, item["agent"]["id"], item["action"]["tool"])
        effects.append({agent: ours.decide(inputs[3 * agents.index(agent)])["effect"] for agent in ("support-bot", "bot-1", "bot-2", "bot-new")})
    assert [e["support-bot"] for e in effects] == ["allow", "deny", "deny", "allow"]
    assert [e["bot-1"] for e in effects] == ["allow", "allow", "deny", "deny"]
    assert [e["bot-new"] for e in effects] == ["deny", "deny", "allow", "allow"]
    assert [e["bot-2"] for e in effects] == ["allow", "allow", "allow", "deny"]
