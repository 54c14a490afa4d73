"""The kill switch at scale: from a suspension to a long-polling engine denying, at 1,000,
10,000 and 100,000 agents in the environment (issue #20).

Needs PostgreSQL (DATABASE_URL, a database of its own: the bench inserts up to 100,000
agents with plain SQL) and Redis (REDIS_URL, the wake-up path). Starts uvicorn (one
process, the ASGI app, as bench/bundle_service.py does), seeds an environment with the
shipped policy pack, then for each size:

  1. tops the environment up to N agents (SQL, one key each) and lets the server bring the
     bundles up to date (the untimed "cold" rebuild);
  2. starts two long-polling engines, each measured on its own: the SDK's (BundleClient +
     EmbeddedBackend, what `warden sidecar` runs; it decides on a thread of its own, not on
     the bench's event loop) and a stock-OPA-protocol engine in a process of its own (raw
     HTTP as OPA sends it, verified with tests/opa/opa_client.py; for the split layout it
     polls the registry bundle, as an OPA configured by discovery does, and sets the new
     data in the policy it compiled beforehand, as OPA keeps its compiled policy when only
     data changes; the single layout compiles);
  3. suspends one agent through the agents API (the click) and times: the API call, the
     first decision that denies it in each engine; and the bytes each engine downloaded;
     per mode (--modes): `snapshot` (the registry snapshot) and `delta` (both engines ask
     for delta bundles, `bundles/<env>/registry?delta=1`, and patch the data they hold);
  4. reads the server's RSS (VmRSS before and after, VmHWM = the peak from the click on, reset
     then through /proc/<pid>/clear_refs, and the peak since start before it), and how much the
     bundle tables grew with the change (what the rebuild wrote: archives, or members).

    .venv/bin/python bench/scale.py [--sizes 1000,10000,100000] [--state /tmp/scale-seed.json]
        [--modes snapshot,delta] [--port 8201]

With --state, the seeded environment (its tag, tokens, how many agents it holds) is kept
in that file and reused by the next run against the same database: seeding 100,000 agents
is done once. A state file from another database is refused by the first query.

Prints a table; asserts nothing. The machine is shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
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
ANALYZE identity_agent, identity_agentkey;
"""

RECONCILE = r"""
import django
django.setup()
from controlplane.bundles.services import refresh_all_environments
refresh_all_environments(reason="bench top-up")
peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(f"cold rebuild process (a worker's reconcile): peak RSS {int(peak) / 1024:.0f} MiB", flush=True)
"""

# What the bundle tables hold (rows, TOAST, indexes): its growth around one change is what the
# change wrote there.
STORED_BYTES = (
    "SELECT coalesce(sum(pg_total_relation_size(oid)), 0) FROM pg_class WHERE relkind = 'r' AND relname IN "
    "('bundles_bundle', 'bundles_bundlepart', 'bundles_archivemember')"
)


def psql(database_url: str, sql: str) -> None:
    subprocess.run(["psql", database_url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, timeout=600)


def stored_bytes() -> int:
    out = subprocess.run(["psql", os.environ["DATABASE_URL"], "-At", "-c", STORED_BYTES], check=True, timeout=60,
                         capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


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
    """`warden sidecar`'s engine: BundleClient long polling + the embedded Rego engine.
    Runs in the bench's process; its decisions are made on a thread of their own (not on the
    event loop), so nothing else the bench does waits for them."""

    def __init__(self, port: int, seed: dict, resources: list[str], *, deltas: bool = False):
        from agents_sdk.bundles import BundleClient, VerificationConfig, VerificationKey
        from agents_sdk.guard.backends import EmbeddedBackend

        keys = {seed["kid"]: VerificationKey.from_pem(seed["kid"], seed["public_pem"])}
        verification = VerificationConfig(keys=keys, keyid=seed["kid"])
        self.clients = [
            BundleClient(f"http://127.0.0.1:{port}/opa", resource, token=seed["token"], verification=verification,
                         long_polling_timeout=30, deltas=deltas and resource.endswith("/registry"))
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
        # One deciding thread, as a sidecar's: its session is built once, then only refreshed.
        self.decider = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdk-decide")

    def _count(self, bundle) -> None:
        self.downloaded += bundle.size

    def wait_for_deny(self, probe: dict, deadline: float) -> float | None:
        """time.time() of the first decision that denies the probe (on the calling thread)."""
        while time.time() < deadline:
            if suspended_in(self.backend.decide(probe)[0]):
                return time.time()
            time.sleep(0.005)
        return None

    def close(self) -> None:
        self.decider.shutdown()
        self.backend.close()


def opa_protocol_engine(port: int, seed: dict, resources: list[str], agent: str, deltas: bool) -> None:
    """A stock OPA's engine, in a process of its own (`--opa-engine`): it loads the bundles
    (untimed), compiles, decides once (its session built, as a running OPA's is), prints
    "ready", then long polls the last resource as OPA sends it; on the 200 it verifies the
    snapshot (or reads the delta and patches its data, as OPA does), sets the new data in
    the compiled policy (OPA keeps its compiled policy when only data changes; the single
    layout recompiles), decides, and prints the time it denied and the bytes it downloaded."""
    import http.client

    from agents_sdk.bundles.delta import apply_patch
    from agents_sdk.engine import RegoEngine
    from tests.opa.opa_client import read_delta, verify_bundle

    def get(resource: str, etag: str = "", wait: int | None = None) -> tuple[int, dict, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=(wait or 0) + 600)
        headers = {"Authorization": f"Bearer {seed['token']}", "User-Agent": "Open Policy Agent/1.4.2 (linux, amd64)",
                   "Prefer": "modes=snapshot,delta" + (f";wait={wait}" if wait else "")}
        if etag:
            headers["If-None-Match"] = etag
        connection.request("GET", f"/opa/{resource}" + ("?delta=1" if deltas and resource.endswith("/registry") else ""),
                           headers=headers)
        response = connection.getresponse()
        body = response.read()
        connection.close()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, body

    verified = []
    etag = ""
    for resource in resources:
        status, headers, body = get(resource)
        if status != 200:
            raise SystemExit(f"OPA-protocol engine: HTTP {status} for {resource}")
        verified.append(verify_bundle(body, public_key_pem=seed["public_pem"], keyid=seed["kid"]))
        etag = headers["etag"]
    modules = {n: c.decode() for v in verified for n, c in v.files.items() if n.endswith(".rego")}
    data = verified[-1].data
    roots = verified[-1].manifest.get("roots", [""])
    # No copy of the data: OPA keeps the store it loaded and patches it; a copy would make the
    # first patched document share nothing with the one the engine encoded (engine.data_json).
    policy = RegoEngine().compile(modules, data, copied=False)
    probe = decision_input(agent, seed["env"])
    if suspended_in(policy.decide(probe)):
        raise SystemExit("OPA-protocol engine: the probe is denied before the suspension")
    print("ready", flush=True)
    while True:
        status, headers, body = get(resources[-1], etag, wait=60)
        if status == 200:
            break
        if status != 304:
            raise SystemExit(f"OPA-protocol poll: HTTP {status} {body[:200]!r}")
    delta = read_delta(body) if deltas else None
    if delta is not None:
        # OPA patches its store in place and checks no signature on deltas; copy-on-write here.
        if delta.manifest.get("roots", roots) != roots:
            raise SystemExit("OPA-protocol engine: the delta's roots differ from the snapshot's")
        data = apply_patch(data, delta.operations, tuple(roots))
    else:
        latest = verify_bundle(body, public_key_pem=seed["public_pem"], keyid=seed["kid"])
        data = latest.data
        new_modules = {n: c.decode() for n, c in latest.files.items() if n.endswith(".rego")} or modules
        if new_modules != modules:
            policy = RegoEngine().compile(new_modules, data, copied=False)
    policy.set_data(data, copied=False)
    denied = suspended_in(policy.decide(probe))
    print(json.dumps({"denied_at": time.time(), "denied": denied, "bytes": len(body), "delta": delta is not None,
                      "rss_peak": int(proc_status(os.getpid())["VmHWM"].split()[0]) / 1024}), flush=True)


async def one_size(port: int, server_pid: int, seed: dict, size: int, layout: str, api_token: str,
                   deltas: bool = False, offset: int = 0) -> dict:
    resources = [f"bundles/{seed['env']}"] if layout == "single" else [
        f"bundles/{seed['env']}/policy", f"bundles/{seed['env']}/registry"]
    sdk = await asyncio.to_thread(SDKEngine, port, seed, resources, deltas=deltas)
    # One untimed change first, so the server's per-process caches (compiled policy set,
    # agent fragments) are warm, as in a web process that has served a change before;
    # the cold figure is printed too.
    warm = f"scale-{seed['tag']}-{size // 2 + 1 + offset:06d}"
    control = await Connection.open(port)
    registry_etag = sdk.clients[-1].etag
    began = time.time()
    reply, _, body = await control.request(
        "POST", f"/api/v1/agents/{warm}/suspend/",
        {"Authorization": f"Token {api_token}", "Content-Type": "application/json"}, json.dumps({"reason": "warm"}).encode())
    cold_seconds = time.time() - began
    control.close()
    if reply >= 300:  # pragma: no cover - a bench
        raise SystemExit(f"warm-up suspend failed: {reply} {body[:300]!r}")
    # The engine holds the warm change before the probe is decided (its deciding thread loads
    # that data now): else the first decision after the click loaded the warm change's data
    # too, measured as part of the suspension.
    for _ in range(1200):
        if sdk.clients[-1].etag != registry_etag:
            break
        await asyncio.sleep(0.1)
    else:
        raise SystemExit("the SDK engine did not receive the warm-up change within 120 s")
    await asyncio.sleep(1.0)
    victim = f"scale-{seed['tag']}-{size // 2 + offset:06d}"
    probe = decision_input(victim, seed["env"])
    loop = asyncio.get_running_loop()
    before = await loop.run_in_executor(sdk.decider, lambda: sdk.backend.decide(probe)[0])
    allowed_before = not suspended_in(before)
    if not allowed_before:  # pragma: no cover - a bench
        raise SystemExit(f"the probe is denied before the suspension: {before}")
    # The OPA-protocol engine: a process of its own, so neither engine's CPU delays the other's.
    engine = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--opa-engine", json.dumps(
            {"port": port, "seed": seed, "resources": resources, "agent": victim, "deltas": deltas}),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    ready = await asyncio.wait_for(engine.stdout.readline(), 600)
    if ready.strip() != b"ready":
        raise SystemExit(f"the OPA-protocol engine did not start: {ready!r}")
    await asyncio.sleep(1.5)  # both polls are held by the server
    downloaded_before = sdk.downloaded
    stored_before = await asyncio.to_thread(stored_bytes)
    before = proc_status(server_pid)
    rss_before = int(before["VmRSS"].split()[0]) / 1024
    peak_since_start = int(before["VmHWM"].split()[0]) / 1024
    # The peak from the click on (the rebuild and its delivery) apart from the peak since start
    # (seeding, the first change, the engines' first snapshots): clear_refs 5 resets VmHWM.
    with open(f"/proc/{server_pid}/clear_refs", "w") as refs:
        refs.write("5")
    control = await Connection.open(port)
    clicked = time.time()
    sdk_watch = loop.run_in_executor(sdk.decider, sdk.wait_for_deny, probe, clicked + 180)
    reply, _, body = await control.request(
        "POST", f"/api/v1/agents/{victim}/suspend/",
        {"Authorization": f"Token {api_token}", "Content-Type": "application/json"},
        json.dumps({"reason": "bench"}).encode())
    returned = time.time() - clicked
    control.close()
    if reply >= 300:
        raise SystemExit(f"suspend failed: {reply} {body[:300]!r}")
    sdk_denied_at = await asyncio.wait_for(sdk_watch, 200)
    opa_line = await asyncio.wait_for(engine.stdout.readline(), 200)
    await engine.wait()
    opa_result = json.loads(opa_line)
    written = await asyncio.to_thread(stored_bytes) - stored_before
    status = proc_status(server_pid)
    sdk_rss = int(proc_status(os.getpid())["VmHWM"].split()[0]) / 1024
    registry = sdk.clients[-1].status().as_opa()
    sdk.close()
    return {
        "size": size,
        "mode": "delta" if deltas else "snapshot",
        "cold_api_seconds": cold_seconds,
        "allowed_before": allowed_before,
        "api_seconds": returned,
        "sdk_denied": None if sdk_denied_at is None else sdk_denied_at - clicked,
        "sdk_bytes": sdk.downloaded - downloaded_before,
        "sdk_type": registry.get("type"),
        "sdk_rss_peak": sdk_rss,
        "opa_denied": opa_result["denied_at"] - clicked if opa_result["denied"] else None,
        "opa_bytes": opa_result["bytes"],
        "opa_type": "delta" if opa_result["delta"] else "snapshot",
        "opa_rss_peak": opa_result["rss_peak"],
        "db_written": written,
        "rss_before": rss_before,
        "rss_after": int(status["VmRSS"].split()[0]) / 1024,
        "rss_peak": int(status["VmHWM"].split()[0]) / 1024,
        "rss_peak_since_start": peak_since_start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--layout", choices=["single", "split"], default="split",
                        help="single: one bundle per environment (the layout before #20); split: policy + registry")
    parser.add_argument("--state", help="a JSON file keeping the seeded environment between runs (reuse it)")
    parser.add_argument("--port", type=int, help="the server's port (default: a free one)")
    parser.add_argument("--modes", default="snapshot,delta",
                        help="snapshot: the engines poll bundles/<env>/registry; delta: they ask for delta bundles "
                             "(?delta=1); each mode is measured at each size, with agents of its own")
    parser.add_argument("--opa-engine", help=argparse.SUPPRESS)  # the OPA-protocol engine's own process
    args = parser.parse_args()
    if args.opa_engine:
        options = json.loads(args.opa_engine)
        opa_protocol_engine(options["port"], options["seed"], options["resources"], options["agent"], options["deltas"])
        return
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
    with serving(env, args.port) as (port, server):
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
            for index, mode in enumerate(args.modes.split(",")):
                row = asyncio.run(one_size(port, server.pid, seed, size, args.layout, seed["api_token"],
                                           deltas=mode == "delta", offset=2 * index))
                print(row, flush=True)
                rows.append(row)
    print(f"\nKill switch at scale ({args.layout} layout): uvicorn (1 process), "
          f"PostgreSQL, Redis, {os.cpu_count()} CPUs (shared), Python {sys.version.split()[0]}, "
          f"loadavg {open('/proc/loadavg').read().split()[:3]}\n")
    header = ("agents", "mode", "cold API s", "API returns s", "SDK denies s", "SDK bytes", "OPA-proto denies s", "OPA bytes",
              "bundle tables grew KB", "server RSS before/after/peak from the click (since start) MiB", "engine peak RSS SDK/OPA MiB")
    print(" | ".join(header))
    for r in rows:
        def f(v):
            return "-" if v is None else f"{v:.2f}"
        print(" | ".join([
            f"{r['size']:,}", r["mode"], f(r["cold_api_seconds"]), f(r["api_seconds"]), f(r["sdk_denied"]), f"{r['sdk_bytes']:,} ({r['sdk_type']})", f(r["opa_denied"]),
            f"{r['opa_bytes'] or 0:,} ({r['opa_type']})", f"{r['db_written'] / 1024:,.0f}", f"{r['rss_before']:.0f}/{r['rss_after']:.0f}/{r['rss_peak']:.0f} ({r['rss_peak_since_start']:.0f})",
            f"{r['sdk_rss_peak']:.0f}/{r['opa_rss_peak']:.0f}",
        ]))


if __name__ == "__main__":
    main()
