"""What one registry change costs a deciding engine (issue #20), in-process.

Compiles the shipped policy pack with a registry of N agents, decides once (the session is
warm), then for each change suspends one agent, as a delta bundle does (the SDK's
copy-on-write patch, agents_sdk.bundles.delta.apply_patch), gives the new data to the
policy (CompiledPolicy.set_data, what EmbeddedBackend.activate does when only the data
changed) and makes the first decision with it, which must deny. Reports per change the
CPU time (thread CPU, median of --changes) of the patch, of set_data and of that first
decision (where the session loads the new data), and the process's RSS.

    python bench/engine_reload.py [--agents 10000,100000] [--changes 5] [--tree DIR]

--tree DIR imports agents_sdk from another checkout (e.g. the tree before a change), so the
same bench times both. Prints figures; asserts nothing. Wall-clock is noisy on a shared
machine: compare the CPU times, or count instructions (valgrind --tool=callgrind) of a run
with --changes 0 and one with --changes 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def registry(agents: int) -> dict:
    """data for the pack with `agents` agents shaped as controlplane.bundles.selectors builds them."""
    entries = {
        f"agent-{i:06d}": {
            "status": "active",
            "owner": f"owner{i % 500}@example.com",
            "team": f"team-{i % 40}",
            "risk_tier": "medium",
            "scopes": ["read:tickets"],
            "key_ids": [f"key-{i:06d}"],
            "egress": {"allow_hosts": []},
            "shell": {"allow_commands": []},
            "sandbox": {},
        }
        for i in range(agents)
    }
    return {
        "warden_registry": {
            "environment": "prod",
            "agents": entries,
            "tools": {"ticket_read": {"scopes": ["read:tickets"], "category": "", "irreversible": False}},
            "grants": {},
            "consumed_grants": [],
            "delegation": {"keys": {}, "revoked": []},
        }
    }


def request(agent: str) -> dict:
    return {
        "agent": {"id": agent, "name": agent, "owner": "bench@example.com", "scopes": ["read:tickets"]},
        "action": {"type": "tool_call", "tool": "ticket_read", "args": {"id": 7}},
        "context": {"session_id": "s-1", "environment": "prod", "time": "2026-01-01T00:00:00Z"},
    }


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="10000,100000")
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--tree", default=str(ROOT), help="the checkout to import agents_sdk from")
    options = parser.parse_args()
    sys.path.insert(0, options.tree)
    from agents_sdk.bundles.delta import apply_patch
    from agents_sdk.engine import RegoEngine, load_modules

    pack = Path(options.tree) / "rego"
    modules = {k: v for k, v in load_modules(pack, relative_to=options.tree).items() if not k.endswith("_test.rego")}
    engine = RegoEngine("regorus")
    print(f"tree {options.tree}; regorus {engine.version}; {len(modules)} modules; thread CPU ms, median of {options.changes}")
    print(f"{'agents':>8} {'patch':>8} {'set_data':>9} {'1st decision':>13} {'total':>8} {'decision after':>15} {'RSS MiB':>8}")
    for size in (int(n) for n in options.agents.split(",")):
        data = registry(size)
        policy = engine.compile(modules, data)
        assert policy.decide(request("agent-000001"))["effect"] == "allow"
        patch_ms, set_ms, first_ms, total_ms, next_us = [], [], [], [], []
        for change in range(options.changes):
            name = f"agent-{change:06d}"
            started = time.thread_time()
            data = apply_patch(data, [{"op": "replace", "path": f"/warden_registry/agents/{name}/status", "value": "suspended"}])
            patched = time.thread_time()
            policy.set_data(data, copied=False)
            given = time.thread_time()
            decision = policy.decide(request(name))
            decided = time.thread_time()
            assert decision["effect"] == "deny", decision
            policy.decide(request(f"agent-{size - 1:06d}"))
            after = time.thread_time()
            patch_ms.append((patched - started) * 1000)
            set_ms.append((given - patched) * 1000)
            first_ms.append((decided - given) * 1000)
            total_ms.append((decided - started) * 1000)
            next_us.append((after - decided) * 1e6)
        if options.changes:
            print(
                f"{size:8} {statistics.median(patch_ms):8.1f} {statistics.median(set_ms):9.1f} "
                f"{statistics.median(first_ms):13.1f} {statistics.median(total_ms):8.1f} "
                f"{statistics.median(next_us):12.0f} us {rss_mib():8.0f}"
            )
        else:
            print(f"{size:8} (no changes) RSS {rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
