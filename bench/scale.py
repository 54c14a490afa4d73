"""The kill switch at scale: from a suspension to a long-polling engine denying, at 1,000,
10,000 and 100,000 agents in the environment (issue #20).

Needs PostgreSQL (DATABASE_URL, a database of its own: the bench inserts up to 100,000
agents with plain SQL) and Redis (REDIS_URL, the wake-up path). Starts uvicorn (one
process, the ASGI app, as bench/bundle_service.py does), seeds an environment with the
shipped policy pack, then for each size:

  1. tops the environment up to N agents (SQL, one key each) and lets the server bring the
     bundles up to date (the untimed "cold" rebuild);
  2. starts two long-polling engines: the SDK's (BundleClient + EmbeddedBackend, what
     `warden sidecar` runs) and a stock-OPA-protocol poller (raw HTTP as OPA sends it,
     verified with tests/opa/opa_client.py; for the split layout it polls the registry
     bundle, as an OPA configured by discovery does, and sets the new data in the policy it
     compiled beforehand, as OPA keeps its compiled policy when only data changes; the
     single layout compiles);
  3. suspends one agent through the agents API (the click) and times: the API call, the
     first decision that denies it in each engine; and the bytes each engine downloaded;
  4. reads the server's RSS (VmRSS now, VmHWM = the peak since start).

    .venv/bin/python bench/scale.py [--sizes 1000,10000,100000] [--state /tmp/scale-seed.json]

With --state, the seeded environment (its tag, tokens, how many agents it holds) is kept
in that file and reused by the next run against the same database: seeding 100,000 agents
is done once. A state file from another database is refused by the first query.

Prints a table; asserts nothing. The machine is shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bundle_service import Connection, proc_status  # noqa: E402
from served import PYTHON, bench_env, migrate_and_seed, serving, wait_up  # noqa: E402

SEED = r"""
import json, sys
import django
django.setup()
from controlplane.accounts import services as account_services
from controlplane.bundles import services as bundles
from controlplane.bundles.signing import active_signing_key
from controlplane.identity.services import register_agent
from tests.accounts.factories import UserFactory

tag = sys.argv[1]
user = UserFactory(username=f"scale-{tag}", roles=["admin"])
_, api_token = account_services.create_token(user=user, name="bench", by=user)
env = bundles.create_environment(name=f"scale-{tag}", by=user)
from controlplane.policies.models import Tool
if not Tool.objects.filter(name="ticket_read").exists():
    from controlplane.policies.services import create_tool
    create_tool(name="ticket_read", by=user, scopes=["read:tickets"])
register_agent(name=f"scale-probe-{tag}", owner_email="bench@example.com", by=user,
               environments=[env.name], scopes=["read:tickets"])
bundles.publish_policies(env, by=user)
_, token = bundles.create_environment_token(env, name="bench", by=user)
key = active_signing_key()
print(json.dumps({"api_token": api_token, "env": env.name, "token": token, "tag": tag,
                  "kid": key.kid, "public_pem": key.public_key_pem}))
"""

TOP_UP = """
INSERT INTO identity_agent (id, name, display_name, owner_email, team, description, scopes, risk_tier,
    environments, status, status_reason, created_at, updated_at, egress_allow_hosts, shell_allow_commands,
    sandbox_profile)
SELECT md5('{tag}' || g)::uuid, 'scale-{tag}-' || lpad(g::text, 6, '0'), '', 'owner' || (g % 997) || '@example.com',
    'team-' || (g % 50), '', '["read:tickets","write:files"]'::jsonb, 'minimal', '["{env}"]'::jsonb, 'active', '',
    now(), now(), '["api.example.com"]'::jsonb, '["ls"]'::jsonb, '{{}}'::jsonb
FROM generate_series({start}, {stop}) AS g;
INSERT INTO identity_agentkey (key_id, public_key, label, created_at, revoked_reason, agent_id)
SELECT encode(sha256(('{tag}' || g)::bytea), 'hex'), 'AAAA', '', now(), '', md5('{tag}' || g)::uuid
FROM generate_series({start}, {stop}) AS g;
"""

RECONCILE = r"""
import django
django.setup()
from controlplane.bundles.services import refresh_all_environments
refresh_all_environments(reason="bench top-up")
"""


def psql(database_url: str, sql: str) -> None:
    subprocess.run(["psql", database_url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, timeout=600)


def decision_input(agent: str, env: str) -> dict:
    return {
        "agent": {"id": agent, "name": agent, "owner": "bench@example.com", "scopes": ["read:tickets"]},
        "action": {"type": "tool_call", "tool": "ticket_read", "args": {"id": 7}},
        "context": {"session_id": "s-1", "environment": env, "time": "2026-01-01T00:00:00Z"},
    }


def suspended_in(decision: dict) -> bool:
    """Denied because the agent is not active (other rules under way elsewhere don't count)."""
    return any(reason.get("rule") == "agent-not-active" for reason in decision.get("reasons", []))


class SDKEngine:
    """`warden sidecar`'s engine: BundleClient long polling + the embedded Rego engine."""

    def __init__(self, port: int, seed: dict, resources: list[str]):
        from agents_sdk.bundles import BundleClient, VerificationConfig, VerificationKey
        from agents_sdk.guard.backends import EmbeddedBackend

        keys = {seed["kid"]: VerificationKey.from_pem(seed["kid"], seed["public_pem"])}
        verification = VerificationConfig(keys=keys, keyid=seed["kid"])
        self.clients = [
            BundleClient(f"http://127.0.0.1:{port}/opa", resource, token=seed["token"], verification=verification,
                         long_polling_timeout=30)
            for resource in resources
        ]
        self.downloaded = 0
        for client in self.clients:
            client.add_listener(self._count)
        if len(self.clients) == 1:
            self.backend = EmbeddedBackend(self.clients[0], start=True)
        else:  # the split layout (docs/opa.md): policy + registry bundles
            from agents_sdk.bundles.multi import BundleSet

            self.backend = EmbeddedBackend(BundleSet(self.clients), start=True)
        self.backend.wait_until_ready(120)

    def _count(self, bundle) -> None:
        self.downloaded += bundle.size

    def close(self) -> None:
        self.backend.close()


async def opa_protocol_engine(port: int, seed: dict, resource: str, etag: str, clicked: list[float], result: dict):
    """One long poll as a stock OPA sends it; on the 200, verify it as OPA does, compile and decide."""
    from agents_sdk.engine import RegoEngine
    from tests.opa.opa_client import verify_bundle

    headers = {"Authorization": f"Bearer {seed['token']}", "Prefer": "modes=snapshot,delta;wait=60",
               "If-None-Match": etag, "User-Agent": "Open Policy Agent/1.4.2 (linux, amd64)"}
    conn = await Connection.open(port)
    try:
        while True:
            status, response_headers, body = await conn.request("GET", f"/opa/{resource}", headers)
            if status == 200:
                break
            if status != 304:
                raise SystemExit(f"OPA-protocol poll: HTTP {status} {body[:200]!r}")
    finally:
        conn.close()
    result["bytes"] = len(body)
    verified = verify_bundle(body, public_key_pem=seed["public_pem"], keyid=seed["kid"])
    data = verified.data
    modules = {n: c.decode() for n, c in verified.files.items() if n.endswith(".rego")} or result["modules"]
    policy = result.get("policy")
    if policy is not None and policy.modules == modules:
        # As OPA does for a bundle of data alone: the new data, no recompile (EmbeddedBackend does the same).
        policy.set_data(data, copied=False)
    else:
        policy = await asyncio.to_thread(RegoEngine().compile, modules, data)
    decision = await asyncio.to_thread(policy.decide, decision_input(result["agent"], seed["env"]))
    result["denied_after"] = time.time() - clicked[0]
    result["denied"] = suspended_in(decision)


async def one_size(port: int, server_pid: int, seed: dict, size: int, layout: str, api_token: str) -> dict:
    resources = [f"bundles/{seed['env']}"] if layout == "single" else [
        f"bundles/{seed['env']}/policy", f"bundles/{seed['env']}/registry"]
    sdk = await asyncio.to_thread(SDKEngine, port, seed, resources)
    # One untimed change first, so the server's per-process caches (compiled policy set,
    # agent fragments) are warm, as in a web process that has served a change before;
    # the cold figure is printed too.
    warm = f"scale-{seed['tag']}-{size // 2 + 1:06d}"
    control = await Connection.open(port)
    began = time.time()
    reply, _, body = await control.request(
        "POST", f"/api/v1/agents/{warm}/suspend/",
        {"Authorization": f"Token {api_token}", "Content-Type": "application/json"}, json.dumps({"reason": "warm"}).encode())
    cold_seconds = time.time() - began
    control.close()
    if reply >= 300:  # pragma: no cover - a bench
        raise SystemExit(f"warm-up suspend failed: {reply} {body[:300]!r}")
    sdk.backend.wait_until_ready(60)
    await asyncio.sleep(1.0)
    victim = f"scale-{seed['tag']}-{size // 2:06d}"
    probe = decision_input(victim, seed["env"])
    before = sdk.backend.decide(probe)[0]
    allowed_before = not suspended_in(before)
    if not allowed_before:  # pragma: no cover - a bench
        raise SystemExit(f"the probe is denied before the suspension: {before}")
    opa_resource = resources[-1]
    # The OPA-protocol engine needs the current ETag and, for the split layout, the policy modules.
    client = sdk.clients[-1]
    opa_result: dict = {"agent": victim, "modules": sdk.clients[0].active.modules}
    if layout == "split":  # the OPA-protocol engine holds the policy compiled with the current data (untimed)
        from agents_sdk.engine import RegoEngine

        held = sdk.backend.bundles.active
        opa_result["policy"] = await asyncio.to_thread(RegoEngine().compile, held.modules, held.data)
        await asyncio.to_thread(opa_result["policy"].decide, probe)  # its session built, as a running OPA's is
    clicked: list[float] = [0.0]
    downloaded_before = sdk.downloaded
    poller = asyncio.create_task(opa_protocol_engine(port, seed, opa_resource, client.etag, clicked, opa_result))
    await asyncio.sleep(1.5)  # both polls are held by the server
    rss_before = int(proc_status(server_pid)["VmRSS"].split()[0]) / 1024
    control = await Connection.open(port)
    clicked[0] = time.time()

    async def click():
        reply, _, body = await control.request(
            "POST", f"/api/v1/agents/{victim}/suspend/",
            {"Authorization": f"Token {api_token}", "Content-Type": "application/json"},
            json.dumps({"reason": "bench"}).encode())
        if reply >= 300:
            raise SystemExit(f"suspend failed: {reply} {body[:300]!r}")
        return time.time() - clicked[0]

    clicking = asyncio.create_task(click())
    sdk_denied = None
    deadline = time.time() + 180
    while time.time() < deadline:
        if suspended_in(sdk.backend.decide(probe)[0]):
            sdk_denied = time.time() - clicked[0]
            break
        await asyncio.sleep(0.005)
    returned = await asyncio.wait_for(clicking, 180)
    control.close()
    await asyncio.wait_for(poller, 180)
    status = proc_status(server_pid)
    sdk.close()
    return {
        "size": size,
        "cold_api_seconds": cold_seconds,
        "allowed_before": allowed_before,
        "api_seconds": returned,
        "sdk_denied": sdk_denied,
        "sdk_bytes": sdk.downloaded - downloaded_before,
        "opa_denied": opa_result.get("denied_after"),
        "opa_bytes": opa_result.get("bytes"),
        "rss_before": rss_before,
        "rss_after": int(status["VmRSS"].split()[0]) / 1024,
        "rss_peak": int(status["VmHWM"].split()[0]) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--layout", choices=["single", "split"], default="split",
                        help="single: one bundle per environment (the layout before #20); split: policy + registry")
    parser.add_argument("--state", help="a JSON file keeping the seeded environment between runs (reuse it)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    env = bench_env()
    state = Path(args.state) if args.state else None
    if state is not None and state.exists():
        seed = json.loads(state.read_text())
    else:
        seed = migrate_and_seed(env, SEED)
        seed["have"] = 0
        if state is not None:
            state.write_text(json.dumps(seed))
    rows = []
    with serving(env) as (port, server):
        asyncio.run(wait_up(port, server))
        for size in sizes:
            started = time.time()
            if size > seed.get("have", 0):
                psql(env["DATABASE_URL"], TOP_UP.format(tag=seed["tag"], env=seed["env"], start=seed["have"] + 1, stop=size))
                seed["have"] = size
                if state is not None:
                    state.write_text(json.dumps(seed))
            elif size < seed["have"]:
                raise SystemExit(f"the saved environment already holds {seed['have']:,} agents: ask for sizes >= that")
            # A reused environment: the agents an earlier run suspended are active again.
            psql(env["DATABASE_URL"], f"UPDATE identity_agent SET status = 'active' WHERE name LIKE 'scale-{seed['tag']}-%' "
                 "AND status = 'suspended'")
            seeded_at = time.time()
            subprocess.run([PYTHON, "-c", RECONCILE], cwd=ROOT, env=env, check=True, timeout=900)
            print(f"{size}: inserted in {seeded_at - started:.1f} s, cold rebuild (separate process) "
                  f"{time.time() - seeded_at:.1f} s", flush=True)
            row = asyncio.run(one_size(port, server.pid, seed, size, args.layout, seed["api_token"]))
            print(row, flush=True)
            rows.append(row)
    print(f"\nKill switch at scale ({args.layout} layout): uvicorn (1 process), PostgreSQL, Redis, "
          f"{os.cpu_count()} CPUs (shared), Python {sys.version.split()[0]}\n")
    header = ("agents", "cold API s", "API returns s", "SDK denies s", "SDK bytes", "OPA-proto denies s", "OPA bytes",
              "RSS before/after/peak MiB")
    print(" | ".join(header))
    for r in rows:
        def f(v):
            return "-" if v is None else f"{v:.2f}"
        print(" | ".join([
            f"{r['size']:,}", f(r["cold_api_seconds"]), f(r["api_seconds"]), f(r["sdk_denied"]), f"{r['sdk_bytes']:,}", f(r["opa_denied"]),
            f"{r['opa_bytes'] or 0:,}", f"{r['rss_before']:.0f}/{r['rss_after']:.0f}/{r['rss_peak']:.0f}",
        ]))


if __name__ == "__main__":
    main()
