"""1,000 simulated long-polling sidecars held by the web tier, each also posting status
and decision logs (issue #20). Loopback, bounded in time.

Starts `--web` uvicorn processes (the ASGI app with the bundle fast path, as
bench/bundle_service.py does) and one Celery worker (it stores the queued uploads,
controlplane/opa/uploads.py) against DATABASE_URL / REDIS_URL, seeds an environment, then
runs N sidecars spread round-robin over the web processes (as a load balancer would), each
with two keep-alive connections: one long-polls a bundle
(`Prefer: modes=snapshot,delta;wait=W`, If-None-Match the ETag it holds; re-polls at once
on every answer), the other posts a status report every few seconds and a small batch of
decision-log events (gzip, as OPA sends them). Measures:

  - long polls held, server RSS before and while holding them (memory per held poll);
  - 304s answering a long poll when its wait ends: lateness past the wait, p50/p99/max;
  - plain conditional GETs (no wait) sent while the fleet is held: latency p50/p99/max;
  - wake-ups: an agent suspended through the API of web process 0; time from the click to
    each poll's 200, on the process that took the click and on the others (through Redis);
  - status and log posts: latency p50/p99/max; errors of every kind (429s included);
  - decision-log events stored by the end against events accepted (nothing lost).

    .venv/bin/python bench/sidecar_fleet.py [--sidecars 1000] [--wait 10] [--web 2] [--port 0]
        [--resource registry]

`--port P` puts the web processes on P, P+1, ... (default: free ports). `--web 1 --no-worker`
is the one-process topology of the first measurement (with this tree, add WARDEN_CELERY_EAGER=1
so uploads are stored in their requests). Copied into an older tree's bench/, it measures that tree.

Prints a table; asserts nothing. The machine is shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench")]

from bundle_service import SERVER, Connection, free_port, percentile, rss_mib  # noqa: E402
from bundle_service import stop as stop_process  # noqa: E402
from served import PYTHON, bench_env, migrate_and_seed, wait_up  # noqa: E402

SEED = r"""
import json, sys
import django
django.setup()
from controlplane.accounts import services as account_services
from controlplane.bundles import services as bundles
from controlplane.identity.services import register_agent
from tests.accounts.factories import UserFactory

tag = sys.argv[1]
user = UserFactory(username=f"fleet-{tag}", roles=["admin"])
_, api_token = account_services.create_token(user=user, name="bench", by=user)
env = bundles.create_environment(name=f"fleet-{tag}", by=user)
for i in range(3):
    register_agent(name=f"fleet-{tag}-{i}", owner_email="bench@example.com", by=user, environments=[env.name],
                   scopes=["read:tickets"])
bundles.publish_policies(env, by=user)
_, token = bundles.create_environment_token(env, name="bench", by=user)
print(json.dumps({"api_token": api_token, "env": env.name, "token": token, "tag": tag}))
"""

STORED = r"""
import json, sys
import django
django.setup()
from controlplane.opa.models import DecisionLog, OPAInstance
print(json.dumps({"events": DecisionLog.objects.filter(environment__name=sys.argv[1]).count(),
                  "instances": OPAInstance.objects.filter(environment__name=sys.argv[1]).count()}))
"""


class Stats:
    def __init__(self) -> None:
        self.lateness: list[float] = []  # long-poll 304s: seconds past the wait
        self.wakeups: list[float] = []  # click → 200
        self.wakeups_by_web: dict[int, list[float]] = {}
        self.events_accepted = 0
        self.posts: list[float] = []
        self.plain: list[float] = []
        self.errors: dict[str, int] = {}
        self.clicked: float | None = None

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def sidecar(index: int, port: int, seed: dict, path: str, etag: str, wait: int, stats: Stats, stop: asyncio.Event):
    poll_headers = {"Authorization": f"Bearer {seed['token']}", "Prefer": f"modes=snapshot,delta;wait={wait}",
                    "User-Agent": "Open Policy Agent/1.4.2 (linux, amd64)"}
    post_headers = {"Authorization": f"Bearer {seed['token']}", "Content-Type": "application/json",
                    "User-Agent": "Open Policy Agent/1.4.2 (linux, amd64)"}
    instance = str(uuid.uuid4())

    async def polls():
        nonlocal etag
        conn = await Connection.open(port)
        try:
            while not stop.is_set():
                started = time.time()
                status, headers, _ = await conn.request("GET", path, {**poll_headers, "If-None-Match": etag})
                if status == 304:
                    stats.lateness.append(time.time() - started - wait)
                elif status == 200:
                    etag = headers.get("etag", etag)
                    if stats.clicked is not None:
                        stats.wakeups.append(time.time() - stats.clicked)
                        stats.wakeups_by_web.setdefault(port, []).append(stats.wakeups[-1])
                else:
                    stats.error(f"poll HTTP {status}")
        finally:
            conn.close()

    async def posts():
        conn = await Connection.open(port)
        await asyncio.sleep(random.uniform(0, 5))
        n = 0
        try:
            while not stop.is_set():
                n += 1
                status_report = {"labels": {"id": instance, "version": "1.4.2"},
                                 "bundles": {seed["env"]: {"name": seed["env"], "active_revision": "x"}}}
                started = time.perf_counter()
                status, _, _ = await conn.request("POST", "/opa/status", post_headers, json.dumps(status_report).encode())
                stats.posts.append(time.perf_counter() - started)
                if status != 200:
                    stats.error(f"status HTTP {status}")
                events = [{"decision_id": str(uuid.uuid4()), "path": "warden/decision", "labels": {"id": instance},
                           "timestamp": "2026-11-30T05:00:00.000000Z", "input": {"agent": {"name": f"fleet-{seed['tag']}-1"}},
                           "result": {"allow": True}} for _ in range(5)]
                started = time.perf_counter()
                status, _, _ = await conn.request("POST", "/opa/logs", {**post_headers, "Content-Encoding": "gzip"},
                                                  gzip.compress(json.dumps(events).encode()))
                stats.posts.append(time.perf_counter() - started)
                if status == 200:
                    stats.events_accepted += len(events)
                else:
                    stats.error(f"logs HTTP {status}")
                try:
                    await asyncio.wait_for(stop.wait(), random.uniform(8, 12))
                except TimeoutError:
                    pass
        finally:
            conn.close()

    try:
        await asyncio.gather(polls(), posts())
    except (OSError, asyncio.IncompleteReadError) as exc:
        stats.error(type(exc).__name__)


async def plain_gets(port: int, seed: dict, path: str, etag_of, stats: Stats, stop: asyncio.Event):
    conn = await Connection.open(port)
    headers = {"Authorization": f"Bearer {seed['token']}", "Prefer": "modes=snapshot,delta"}
    try:
        while not stop.is_set():
            started = time.perf_counter()
            status, _, _ = await conn.request("GET", path, {**headers, "If-None-Match": etag_of()})
            if status == 304:
                stats.plain.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)
    finally:
        conn.close()


@contextlib.contextmanager
def web_tier(env: dict[str, str], count: int, base_port: int, worker: bool):
    """`count` uvicorn processes (ports base_port, base_port+1, ... or free ones) and, with
    `worker`, one Celery worker storing the queued uploads; stopped on leaving."""
    processes, ports = [], []
    try:
        for i in range(count):
            port = base_port + i if base_port else free_port()
            processes.append(subprocess.Popen([PYTHON, "-c", SERVER, str(port)], cwd=ROOT, env=env))
            ports.append(port)
        workers = []
        if worker:
            workers.append(subprocess.Popen(
                [PYTHON, "-m", "celery", "-A", "controlplane", "worker", "--pool", "solo", "--loglevel", "WARNING",
                 "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"fleet-{os.getpid()}@%h"],
                cwd=ROOT, env=env))
        yield ports, processes, workers
    finally:
        for process in processes + (workers if worker else []):
            stop_process(process)


def total_rss(processes) -> float:
    return sum(rss_mib(process.pid) for process in processes)


def cpu_seconds(processes) -> float:
    """User + system CPU the processes used: unlike latencies, barely moved by other load."""
    total = 0
    for process in processes:
        with open(f"/proc/{process.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


async def run(ports: list[int], servers, workers, seed: dict, args) -> list[tuple[str, str]]:
    for port, server in zip(ports, servers, strict=True):
        await wait_up(port, server)
    path = f"/opa/bundles/{seed['env']}" + (f"/{args.resource}" if args.resource != "combined" else "")
    for port in ports:  # each process reads and caches the bundle once, as its first poller would make it
        first = await Connection.open(port)
        status, headers, _ = await first.request("GET", path, {"Authorization": f"Bearer {seed['token']}"})
        first.close()
        if status != 200:
            raise SystemExit(f"GET {path}: {status}")
    etag = headers["etag"]
    await asyncio.sleep(2)
    baseline = total_rss(servers)
    cpu_start, worker_cpu_start = cpu_seconds(servers), cpu_seconds(workers)
    stats, stop = Stats(), asyncio.Event()
    fleet = []
    for i in range(args.sidecars):  # open gradually, as a fleet starting up would
        port = ports[i % len(ports)]
        fleet.append(asyncio.create_task(sidecar(i, port, seed, path, etag, args.wait, stats, stop)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    await asyncio.sleep(3)
    holding = total_rss(servers)
    current = [etag]
    plain = asyncio.create_task(plain_gets(ports[-1], seed, path, lambda: current[0], stats, stop))
    await asyncio.sleep(args.wait * 2 + 2)  # every poll ends its wait twice: 304s
    control = await Connection.open(ports[0])
    stats.clicked = time.time()
    reply, _, body = await control.request(
        "POST", f"/api/v1/agents/fleet-{seed['tag']}-0/suspend/",
        {"Authorization": f"Token {seed['api_token']}", "Content-Type": "application/json"},
        json.dumps({"reason": "fleet bench"}).encode())
    click_seconds = time.time() - stats.clicked
    control.close()
    if reply >= 300:
        stats.error(f"suspend HTTP {reply}: {body[:100]!r}")
    deadline = time.time() + 60
    while len(stats.wakeups) < args.sidecars and time.time() < deadline:
        await asyncio.sleep(0.2)
    peak = total_rss(servers)
    web_cpu = cpu_seconds(servers) - cpu_start
    requests = len(stats.lateness) + len(stats.wakeups) + len(stats.plain) + len(stats.posts)
    stop.set()
    await asyncio.sleep(0.5)
    for task in [*fleet, plain]:
        task.cancel()
    await asyncio.gather(*fleet, plain, return_exceptions=True)
    stored = {}
    if workers:
        queue_deadline = time.time() + 120  # the worker finishes the queue
        while time.time() < queue_deadline:
            stored = json.loads(subprocess.run([PYTHON, "-c", STORED, seed["env"]], cwd=ROOT, env=args.env,
                                               check=True, capture_output=True, text=True).stdout)
            if stored["events"] >= stats.events_accepted:
                break
            await asyncio.sleep(2)

    def p(values: list[float], scale: float = 1000) -> str:
        if not values:
            return "-"
        return f"{percentile(values, .5) * scale:.1f} / {percentile(values, .99) * scale:.1f} / {max(values) * scale:.1f}"

    rows = [
        ("sidecars (long poll + status/log posts)", f"{args.sidecars} over {len(ports)} web process(es)"),
        ("web RSS idle / holding / end, all processes (MiB)", f"{baseline:.0f} / {holding:.0f} / {peak:.0f}"),
        ("memory per held poll (KiB)", f"{(holding - baseline) * 1024 / args.sidecars:.1f}"),
        (f"long-poll 304s: lateness past wait={args.wait}s p50/p99/max (ms)", p(stats.lateness)),
        ("  count", f"{len(stats.lateness)}"),
        ("plain conditional GET 304 p50/p99/max (ms)", p(stats.plain)),
        ("  count", f"{len(stats.plain)}"),
        ("status + log posts p50/p99/max (ms)", p(stats.posts)),
        ("  count", f"{len(stats.posts)}"),
        ("suspend API call returned (s)", f"{click_seconds:.3f}"),
        ("wake-ups: click → 200 p50/p99/max (ms)", p(stats.wakeups)),
        ("  polls woken", f"{len(stats.wakeups)} of {args.sidecars}"),
        ("  after the first 200 (fan-out, not the rebuild) p50/p99/max (ms)",
         p([w - min(stats.wakeups) for w in stats.wakeups])),
    ]
    for i, port in enumerate(ports):
        where = "took the click" if i == 0 else "woken through Redis"
        rows.append((f"  web {i} ({where}) p50/p99/max (ms)", p(stats.wakeups_by_web.get(port, []))))
    rows.append(("web CPU s per 1,000 answers (polls, posts; load-independent)",
                 f"{web_cpu * 1000 / max(requests, 1):.2f} ({web_cpu:.1f} s for {requests})"))
    if workers:
        rows.append(("worker CPU s per 1,000 posts", f"{(cpu_seconds(workers) - worker_cpu_start) * 1000 / max(len(stats.posts), 1):.2f}"))
        rows.append(("decision-log events accepted / stored", f"{stats.events_accepted} / {stored.get('events', '-')}"))
        rows.append(("worker RSS (MiB)", f"{total_rss(workers):.0f}"))
    rows.append(("errors", json.dumps(stats.errors) if stats.errors else "none"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sidecars", type=int, default=1000)
    parser.add_argument("--wait", type=int, default=10, help="long_polling_timeout_seconds")
    parser.add_argument("--web", type=int, default=2, help="web (uvicorn) processes")
    parser.add_argument("--port", type=int, default=0, help="first web port (default: free ports)")
    parser.add_argument("--no-worker", action="store_true", help="no Celery worker (uploads stored in requests)")
    parser.add_argument("--resource", choices=["combined", "registry"], default="registry")
    args = parser.parse_args()
    env = bench_env(redis=True)
    args.env = env
    seed = migrate_and_seed(env, SEED)
    load = os.getloadavg()
    with web_tier(env, args.web, args.port, not args.no_worker) as (ports, servers, workers):
        rows = asyncio.run(asyncio.wait_for(run(ports, servers, workers, seed, args), 900))
    print(f"\nSidecar fleet: uvicorn ({args.web} process(es)){'' if args.no_worker else ' + 1 Celery worker'}, "
          f"PostgreSQL, Redis, {os.cpu_count()} CPUs (shared), Python {sys.version.split()[0]}, "
          f"resource {args.resource}, load average at start {load[0]:.2f} / at end {os.getloadavg()[0]:.2f}\n")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
