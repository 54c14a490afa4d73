"""1,000 simulated long-polling sidecars held by the web tier, each also posting status
and decision logs (issue #20). Loopback, bounded in time.

Starts `--web` uvicorn processes (the ASGI app with the bundle fast path, as
bench/bundle_service.py does) and one Celery worker (it stores the queued uploads,
controlplane/opa/uploads.py) against DATABASE_URL / REDIS_URL, seeds an environment, measures
the web CPU each kind of request costs (one kind at a time, against web 0), then
runs N sidecars spread round-robin over the web processes (as a load balancer would), each
with two keep-alive connections: one long-polls a bundle
(`Prefer: modes=snapshot,delta;wait=W`, If-None-Match the ETag it holds; re-polls at once
on every answer), the other posts a status report every few seconds and a small batch of
decision-log events (gzip, as OPA sends them). Measures:

  - web CPU µs per plain 304, per long-poll 304 at its wait's end, per status post and per
    decision-log post (process CPU time, idle rate subtracted: what other load barely moves);
  - long polls held, server RSS before and while holding them (memory per held poll);
  - 304s answering a long poll when its wait ends: arrival past the requested wait (negative
    when the server ended the wait early on purpose, see controlplane.opa.longpoll), how long
    polls were held, the busiest 100 ms of 304s (how much of a herd they are) and, with
    `--server-probe`, lateness past the end the server chose (the cost of answering);
  - plain conditional GETs (no wait) sent while the fleet is held: latency p50/p99/max;
  - wake-ups: an agent suspended through the API of web process 0; time from the click to
    each poll's 200, on the process that took the click and on the others (through Redis);
  - status and log posts: latency p50/p99/max; errors of every kind (429s included);
  - decision-log events stored by the end against events accepted (nothing lost);
  - the load generator's own loop lag and CPU per request: the fleet shares the server's
    cores, so it is a lean client (requests are bytes made once, answers cut by
    Content-Length, asyncio protocols, no streams) and reports what it costs.

    .venv/bin/python bench/sidecar_fleet.py [--sidecars 1000] [--wait 10] [--web 2] [--port 0]
        [--resource registry] [--load-procs 1] [--server-probe] [--no-cpu-phases] [--tree DIR]

`--load-procs N` splits the sidecars over N load processes, so one Python process driving
the whole fleet is not the bottleneck; every load process measures its own event-loop lag
(a 5 ms sleep's overshoot: how late it handles what arrived), overall and while long-poll
304s arrive. `--server-probe` wraps each web process's app to measure, server-side, how far
past its wait each long-poll 304 is sent, and the web loop's own lag (bench only).

`--port P` puts the web processes on P, P+1, ... (default: free ports). `--web 1 --no-worker`
is the one-process topology of the first measurement (with this tree, add WARDEN_CELERY_EAGER=1
so uploads are stored in their requests). `--tree DIR` runs the web tier, worker, migrations and
seed from another source tree (e.g. a worktree of the previous revision, with a database of
its own), driven by this load generator: a before/after in the same conditions.

Prints a table; asserts nothing. The machine is shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gzip
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench")]

from bundle_service import SERVER, Connection, free_port, percentile, rss_mib  # noqa: E402
from bundle_service import stop as stop_process  # noqa: E402
from served import PYTHON, bench_env, wait_up  # noqa: E402

# The source tree the web tier, worker and seed run from (--tree): this one, or an older worktree.
TREE = ROOT

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


class LeanConnection(asyncio.Protocol):
    """The load generator's HTTP/1.1 keep-alive client: a request is bytes made once and
    written as is; the answer is cut out of the buffer by its Content-Length. The fleet runs
    on the same cores as the server, so every microsecond it spends is taken from the web
    tier it measures (its loop lag and CPU are reported)."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None

    @classmethod
    async def open(cls, port: int) -> LeanConnection:
        _, protocol = await asyncio.get_running_loop().create_connection(cls, "127.0.0.1", port)
        return protocol

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        length = int(header_of(head, b"content-length") or 0)
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4:end + 4 + length])
        del self.buffer[:end + 4 + length]
        self.waiter.set_result((int(head[9:12]), head, body))

    def connection_lost(self, exc) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("the server closed the connection"))

    async def send(self, request: bytes) -> tuple[int, bytes, bytes]:
        """(status, lower-cased head, body) of the answer to `request` (whole HTTP/1.1 bytes)."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def http_request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def header_of(head: bytes, name: bytes) -> str | None:
    """A header's value from a lower-cased response head (`name` lower-case, no colon)."""
    at = head.find(b"\r\n" + name + b":")
    if at < 0:
        return None
    start = at + len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start:end if end >= 0 else None].strip().decode("latin-1")


class Stats:
    def __init__(self) -> None:
        self.lateness: list[float] = []  # long-poll 304s: seconds past the requested wait (< 0: ended early)
        self.late_chosen: list[float] = []  # the same, past the hold the server chose (--server-probe)
        self.chosen_at: list[float] = []  # when each of those arrived (time.time())
        self.late_at: list[float] = []  # when each of those arrived (time.time())
        self.woken_at: list[tuple[int, float]] = []  # (port, time.time()) of each long-poll 200
        self.loop_lag: list[tuple[float, float]] = []  # (time.time(), seconds) of this load process
        self.events_accepted = 0
        self.posts: list[float] = []
        self.plain: list[float] = []
        self.errors: dict[str, int] = {}
        self.clicked: float | None = None
        self.client_cpu = 0.0  # CPU seconds the load process(es) used while the fleet ran

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


OPA_AGENT = "Open Policy Agent/1.4.2 (linux, amd64)"


def log_events(seed: dict, instance: str, count: int = 5) -> bytes:
    """A gzip decision-log chunk of `count` events with fresh decision ids, as OPA sends it."""
    events = [{"decision_id": str(uuid.uuid4()), "path": "warden/decision", "labels": {"id": instance},
               "timestamp": "2026-11-30T05:00:00.000000Z", "input": {"agent": {"name": f"fleet-{seed['tag']}-1"}},
               "result": {"allow": True}} for _ in range(count)]
    return gzip.compress(json.dumps(events).encode(), compresslevel=1)


def status_report(seed: dict, instance: str) -> bytes:
    return json.dumps({"labels": {"id": instance, "version": "1.4.2"},
                       "bundles": {seed["env"]: {"name": seed["env"], "active_revision": "x"}}}).encode()


async def sidecar(index: int, port: int, seed: dict, path: str, etag: str, wait: int, stats: Stats, stop: asyncio.Event):
    auth = f"Bearer {seed['token']}"
    instance = str(uuid.uuid4())
    status_request = http_request("POST", "/opa/status", {"Authorization": auth, "Content-Type": "application/json",
                                                          "User-Agent": OPA_AGENT}, status_report(seed, instance))
    log_headers = {"Authorization": auth, "Content-Type": "application/json", "Content-Encoding": "gzip",
                   "User-Agent": OPA_AGENT}

    def poll_request(held: str) -> bytes:
        return http_request("GET", path, {"Authorization": auth, "Prefer": f"modes=snapshot,delta;wait={wait}",
                                          "User-Agent": OPA_AGENT, "If-None-Match": held})

    async def polls():
        nonlocal etag
        conn = await LeanConnection.open(port)
        request = poll_request(etag)
        try:
            while not stop.is_set():
                started = time.time()
                status, head, _ = await conn.send(request)
                if status == 304:
                    arrived = time.time()
                    stats.late_at.append(arrived)
                    stats.lateness.append(arrived - started - wait)
                    hold = header_of(head, b"x-bench-hold")
                    if hold is not None:
                        stats.late_chosen.append(arrived - started - float(hold))
                        stats.chosen_at.append(arrived)
                elif status == 200:
                    etag = header_of(head, b"etag") or etag
                    request = poll_request(etag)
                    stats.woken_at.append((port, time.time()))
                else:
                    stats.error(f"poll HTTP {status}")
        finally:
            conn.close()

    async def posts():
        conn = await LeanConnection.open(port)
        await asyncio.sleep(random.uniform(0, 5))
        try:
            while not stop.is_set():
                started = time.perf_counter()
                status, _, _ = await conn.send(status_request)
                stats.posts.append(time.perf_counter() - started)
                if status != 200:
                    stats.error(f"status HTTP {status}")
                body = log_events(seed, instance)
                started = time.perf_counter()
                status, _, _ = await conn.send(http_request("POST", "/opa/logs", log_headers, body))
                stats.posts.append(time.perf_counter() - started)
                if status == 200:
                    stats.events_accepted += 5
                else:
                    stats.error(f"logs HTTP {status}")
                await asyncio.sleep(random.uniform(8, 12))  # cancelled at the end
        finally:
            conn.close()

    try:
        await asyncio.gather(polls(), posts())
    except (OSError, asyncio.IncompleteReadError) as exc:
        stats.error(type(exc).__name__)


async def plain_gets(port: int, seed: dict, path: str, etag_of, stats: Stats, stop: asyncio.Event):
    conn = await LeanConnection.open(port)
    headers = {"Authorization": f"Bearer {seed['token']}", "Prefer": "modes=snapshot,delta"}
    try:
        while not stop.is_set():
            started = time.perf_counter()
            status, _, _ = await conn.send(http_request("GET", path, {**headers, "If-None-Match": etag_of()}))
            if status == 304:
                stats.plain.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)
    finally:
        conn.close()


async def cpu_per_request(port: int, server, seed: dict, path: str, etag: str) -> tuple[list[tuple[str, str]], int]:
    """Web CPU per answer of each kind, one kind at a time against one web process before the
    fleet starts: its user + system CPU over the phase, less its idle rate, per request. CPU
    time is what other load on the machine barely moves (unlike latencies). Returns the rows
    and the decision-log events it posted."""
    auth = f"Bearer {seed['token']}"
    instance = str(uuid.uuid4())

    async def idle_rate() -> float:
        cpu, started = cpu_seconds([server]), time.perf_counter()
        await asyncio.sleep(2)
        return (cpu_seconds([server]) - cpu) / (time.perf_counter() - started)

    async def phase(connections: int, requests: list[bytes], expect: int) -> str:
        rate = await idle_rate()
        share = len(requests) // connections
        errors = 0

        async def one(mine: list[bytes]) -> None:
            nonlocal errors
            conn = await LeanConnection.open(port)
            try:
                for request in mine:
                    status, _, _ = await conn.send(request)
                    errors += status != expect
            finally:
                conn.close()

        cpu, started = cpu_seconds([server]), time.perf_counter()
        await asyncio.gather(*(one(requests[i * share:(i + 1) * share]) for i in range(connections)))
        used = cpu_seconds([server]) - cpu - rate * (time.perf_counter() - started)
        return f"{used * 1e6 / (share * connections):.0f}" + (f" ({errors} not {expect})" if errors else "")

    poll = {"Authorization": auth, "User-Agent": OPA_AGENT, "If-None-Match": etag}
    post = {"Authorization": auth, "Content-Type": "application/json", "User-Agent": OPA_AGENT}
    plain = await phase(8, [http_request("GET", path, {**poll, "Prefer": "modes=snapshot,delta"})] * 2000, 304)
    held = await phase(250, [http_request("GET", path, {**poll, "Prefer": "modes=snapshot,delta;wait=1"})] * 1000, 304)
    status = await phase(8, [http_request("POST", "/opa/status", post, status_report(seed, instance))] * 1200, 200)
    logs = await phase(8, [http_request("POST", "/opa/logs", {**post, "Content-Encoding": "gzip"},
                                        log_events(seed, instance)) for _ in range(1200)], 200)
    return [
        ("web CPU µs per request, one kind at a time (web 0, idle CPU subtracted):", ""),
        ("  plain conditional GET answered 304", plain),
        ("  long poll answered 304 at its wait's end (wait=1, 250 held at once)", held),
        ("  status report (POST /opa/status)", status),
        ("  decision-log chunk, 5 events gzip (POST /opa/logs)", logs),
    ], 1200 * 5


# --server-probe: bench-only ASGI wrapper (nothing of it is in the product). For each long
# poll answered 304: seconds from the request reaching the app to the 304's start, past the
# wait; and the web loop's lag (a 5 ms sleep's overshoot), so a late timer is told apart
# from late work after it. GET /bench/probe returns them (and resets them).
PROBE = r"""
import asyncio as _asyncio, contextvars as _contextvars, json as _json, re as _re, time as _time
_probe = {"late": [], "lag": [], "gc": []}
import gc as _gc
_gc_started = [0.0]
def _gc_timed(phase, info):  # collections of generations 1 and 2: (time.time(), seconds, generation)
    if info["generation"] == 0:
        return
    if phase == "start":
        _gc_started[0] = _time.perf_counter()
    else:
        _probe["gc"].append((_time.time(), _time.perf_counter() - _gc_started[0], info["generation"]))
_gc.callbacks.append(_gc_timed)
# The hold the server chose for this request (longpoll.hold_seconds, when the tree has it: it
# may end a wait early on purpose), so lateness is measured past the end the server chose.
_chosen = _contextvars.ContextVar("bench_chosen_hold")
try:
    from controlplane.opa import longpoll as _longpoll
    _hold_seconds = _longpoll.hold_seconds
    def _recorded_hold(wait):
        held = _hold_seconds(wait)
        box = _chosen.get(None)
        if box is not None:
            box["hold"] = held
        return held
    _longpoll.hold_seconds = _recorded_hold
except (ImportError, AttributeError):  # an older tree: every hold is the full wait
    pass
def probed(app):
    async def _lag():
        while True:
            started = _time.perf_counter()
            await _asyncio.sleep(0.005)
            _probe["lag"].append((_time.time(), _time.perf_counter() - started - 0.005))
    async def wrapped(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/bench/probe":
            if not _probe.get("started"):
                _probe["started"] = _asyncio.ensure_future(_lag())
                _probe["lag"].clear(); _probe["late"].clear(); _probe["gc"].clear()
            # What a full collection walks at this moment, by generation, and what is frozen.
            tracked = [[len(_gc.get_objects(g)) for g in range(3)] + [_gc.get_freeze_count()]]
            body = _json.dumps({"late": _probe["late"], "lag": _probe["lag"], "gc": _probe["gc"],
                                "tracked": tracked}).encode()
            _probe["late"], _probe["lag"], _probe["gc"] = [], [], []
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        wait = None
        for key, value in scope.get("headers", ()):
            if key == b"prefer":
                found = _re.search(rb"wait=(\d+)", value)
                wait = int(found.group(1)) if found else None
        if wait is None:
            return await app(scope, receive, send)
        started = _time.perf_counter()
        box = {"hold": float(wait)}
        _chosen.set(box)
        async def timed_send(message):
            if message["type"] == "http.response.start" and message["status"] == 304:
                _probe["late"].append(_time.perf_counter() - started - box["hold"])
                message = {**message, "headers": [*message["headers"], (b"x-bench-hold", str(box["hold"]).encode())]}
            await send(message)
        return await app(scope, receive, timed_send)
    return wrapped
"""


async def loop_lag(stats: Stats, stop: asyncio.Event) -> None:
    """This load process's event-loop lag: how late it handles what arrives on its sockets."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.005)
        stats.loop_lag.append((time.time(), time.perf_counter() - started - 0.005))


async def fleet_part(indices: range, ports: list[int], seed: dict, path: str, etag: str, wait: int, stats: Stats,
                     stop: asyncio.Event, procs: int) -> list[asyncio.Task]:
    tasks = [asyncio.create_task(loop_lag(stats, stop))]
    for n, i in enumerate(indices):  # open gradually, as a fleet starting up would (same total rate)
        tasks.append(asyncio.create_task(sidecar(i, ports[i % len(ports)], seed, path, etag, wait, stats, stop)))
        if n % 50 == 49:
            await asyncio.sleep(0.05 * procs)
    return tasks


STATS_FIELDS = ("lateness", "late_chosen", "chosen_at", "late_at", "woken_at", "loop_lag", "posts", "events_accepted", "errors",
                "client_cpu")


def load_child(config: dict) -> None:
    """--load-child: a share of the fleet; answers `count` (long-poll 200s so far) and `stop`
    (then prints its measurements as JSON) on stdin."""

    async def main() -> None:
        stats, stop = Stats(), asyncio.Event()
        cpu = time.process_time()
        tasks = await fleet_part(range(config["first"], config["sidecars"], config["procs"]), config["ports"],
                                 config["seed"], config["path"], config["etag"], config["wait"], stats, stop,
                                 config["procs"])
        loop = asyncio.get_running_loop()
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip() not in ("stop", ""):
            print(len(stats.woken_at), flush=True)
        stats.client_cpu = time.process_time() - cpu
        stop.set()
        await asyncio.sleep(0.5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        print(json.dumps({name: getattr(stats, name) for name in STATS_FIELDS}), flush=True)

    asyncio.run(main())


class LoadProcesses:
    """`procs - 1` child load processes (this process drives share 0)."""

    def __init__(self, procs: int, config: dict, env: dict):
        self.children = [
            subprocess.Popen([PYTHON, __file__, "--load-child", json.dumps({**config, "first": first, "procs": procs})],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
            for first in range(1, procs)]

    async def _ask(self, command: str) -> list[str]:
        def ask():
            answers = []
            for child in self.children:
                child.stdin.write(command + "\n")
                child.stdin.flush()
                answers.append(child.stdout.readline())
            return answers
        return await asyncio.get_running_loop().run_in_executor(None, ask)

    async def woken(self) -> int:
        return sum(int(line) for line in await self._ask("count"))

    async def stop_into(self, stats: Stats) -> None:
        for line in await self._ask("stop"):
            part = json.loads(line)
            for name in STATS_FIELDS:
                if name in ("events_accepted", "client_cpu"):
                    setattr(stats, name, getattr(stats, name) + part[name])
                elif name == "errors":
                    for what, n in part[name].items():
                        stats.errors[what] = stats.errors.get(what, 0) + n
                else:
                    getattr(stats, name).extend(tuple(x) if isinstance(x, list) else x for x in part[name])
        for child in self.children:
            child.wait(timeout=30)


async def queue_drained(env: dict[str, str], max_seconds: float = 120) -> None:
    """Until the upload queue is empty (the worker stored what the CPU phases posted)."""
    import redis

    client = redis.Redis.from_url(env["REDIS_URL"])
    deadline = time.time() + max_seconds
    while client.llen("warden:opa:uploads") and time.time() < deadline:
        await asyncio.sleep(0.5)
    client.close()


async def probe(ports: list[int]) -> dict:
    merged: dict[str, list] = {"late": [], "lag": [], "gc": [], "tracked": []}
    for port in ports:
        conn = await Connection.open(port)
        _, _, body = await conn.request("GET", "/bench/probe", {})
        conn.close()
        for name, values in json.loads(body).items():
            merged[name] += values
    return merged


@contextlib.contextmanager
def web_tier(env: dict[str, str], count: int, base_port: int, worker: bool, server_probe: bool = False):
    """`count` uvicorn processes (ports base_port, base_port+1, ... or free ones) and, with
    `worker`, one Celery worker storing the queued uploads; stopped on leaving."""
    processes, ports = [], []
    try:
        for i in range(count):
            port = base_port + i if base_port else free_port()
            server = SERVER.replace("uvicorn.run(application", PROBE + "uvicorn.run(probed(application)") \
                if server_probe else SERVER
            processes.append(subprocess.Popen([PYTHON, "-c", server, str(port)], cwd=TREE, env=env))
            ports.append(port)
        workers = []
        if worker:
            workers.append(subprocess.Popen(
                [PYTHON, "-m", "celery", "-A", "controlplane", "worker", "--pool", "solo", "--loglevel", "WARNING",
                 "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"fleet-{os.getpid()}@%h"],
                cwd=TREE, env=env))
        yield ports, processes, workers
    finally:
        for process in processes + (workers if worker else []):
            stop_process(process)


def p99max(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{percentile(values, .99) * 1000:.1f} / {max(values) * 1000:.1f}"


def held_spread(lateness: list[float], wait: int) -> str:
    """How long the long polls answered 304 were held: the server ends waits early on purpose
    (controlplane.opa.longpoll.hold_seconds), spread over the last part of the wait."""
    if not lateness:
        return "-"
    held = sorted(wait + late for late in lateness)
    return f"{held[0]:.2f} / {percentile(held, .5):.2f} / {held[-1]:.2f}"


def busiest(arrivals: list[float], window: float) -> int:
    """The most arrivals within any `window` seconds: how much of a herd the 304s still are."""
    most, first = 0, 0
    for last, at in enumerate(arrivals):
        while at - arrivals[first] > window:
            first += 1
        most = max(most, last - first + 1)
    return most


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
    stats, stop = Stats(), asyncio.Event()
    cpu_rows: list[tuple[str, str]] = []
    if not args.no_cpu_phases:
        cpu_rows, stats.events_accepted = await cpu_per_request(ports[0], servers[0], seed, path, etag)
        if workers:
            await queue_drained(args.env)
    await asyncio.sleep(2)
    baseline = total_rss(servers)
    cpu_start, worker_cpu_start = cpu_seconds(servers), cpu_seconds(workers)
    client_cpu = time.process_time()
    procs = max(1, args.load_procs)
    config = {"ports": ports, "seed": seed, "path": path, "etag": etag, "wait": args.wait, "sidecars": args.sidecars}
    children = LoadProcesses(procs, config, args.env)
    if args.server_probe:
        await probe(ports)  # starts the web loops' lag probes
    fleet_started = time.time()
    fleet = await fleet_part(range(0, args.sidecars, procs), ports, seed, path, etag, args.wait, stats, stop, procs)
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
    while len(stats.woken_at) + await children.woken() < args.sidecars and time.time() < deadline:
        await asyncio.sleep(0.2)
    peak = total_rss(servers)
    web_cpu = cpu_seconds(servers) - cpu_start
    stats.client_cpu += time.process_time() - client_cpu
    server_side = await probe(ports) if args.server_probe else {}
    stop.set()
    await asyncio.sleep(0.5)
    for task in [*fleet, plain]:
        task.cancel()
    await asyncio.gather(*fleet, plain, return_exceptions=True)
    await children.stop_into(stats)
    wakeups = [at - stats.clicked for _, at in stats.woken_at]
    wakeups_by_web: dict[int, list[float]] = {}
    for port, at in stats.woken_at:
        wakeups_by_web.setdefault(port, []).append(at - stats.clicked)
    requests = len(stats.lateness) + len(wakeups) + len(stats.plain) + len(stats.posts)
    arrivals = sorted(stats.late_at)

    def near_304s(at: float) -> bool:  # within 0.25 s of a long-poll 304's arrival
        i = bisect.bisect_left(arrivals, at - 0.25)
        return i < len(arrivals) and arrivals[i] <= at + 0.25

    clicked_at = stats.clicked or 0.0
    before_click = [late for late, at in zip(stats.late_chosen, stats.chosen_at, strict=True) if at < clicked_at]
    after_click = [late for late, at in zip(stats.late_chosen, stats.chosen_at, strict=True) if at >= clicked_at]
    lag_all = [lag for _, lag in stats.loop_lag]
    lag_herd = [lag for at, lag in stats.loop_lag if near_304s(at)]
    stored = {}
    if workers:
        queue_deadline = time.time() + 120  # the worker finishes the queue
        while time.time() < queue_deadline:
            stored = json.loads(subprocess.run([PYTHON, "-c", STORED, seed["env"]], cwd=TREE, env=args.env,
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
        (f"long-poll 304s: arrival past the requested wait={args.wait}s p50/p99/max (ms, < 0: ended early)",
         p(stats.lateness)),
        ("  count", f"{len(stats.lateness)}"),
        ("  held for (s) min / p50 / max", held_spread(stats.lateness, args.wait)),
        ("  past the end the server chose p50/p99/max (ms) (--server-probe)", p(stats.late_chosen)),
        ("    before the click (the fleet held, nothing changing)", p(before_click)),
        ("    from the click on (the suspension's rebuild and wake-ups)", p(after_click)),
        ("    those over 25 ms late, by second since the fleet connected (s: count)",
         " ".join(f"{second}: {count}" for second, count in sorted(Counter(
             int(at - fleet_started) for at, late in zip(stats.chosen_at, stats.late_chosen, strict=True) if late > 0.025).items()))
         or "none"),
        ("  busiest 100 ms: long-poll 304s arriving", f"{busiest(arrivals, 0.1)}"),
        (f"load generator loop lag p50/p99/max (ms), {procs} load process(es)", p(lag_all)),
        ("  while long-poll 304s arrive (±0.25 s) p50/p99/max (ms)", p(lag_herd)),
        ("  load generator CPU µs per request (all load processes)",
         f"{stats.client_cpu * 1e6 / max(requests, 1):.0f} ({stats.client_cpu:.1f} s)"),
        ("plain conditional GET 304 p50/p99/max (ms)", p(stats.plain)),
        ("  count", f"{len(stats.plain)}"),
        ("status + log posts p50/p99/max (ms)", p(stats.posts)),
        ("  count", f"{len(stats.posts)}"),
        ("suspend API call returned (s)", f"{click_seconds:.3f}"),
        ("wake-ups: click → 200 p50/p99/max (ms)", p(wakeups)),
        ("  polls woken", f"{len(wakeups)} of {args.sidecars}"),
        ("  after the first 200 (fan-out, not the rebuild) p50/p99/max (ms)",
         p([w - min(wakeups) for w in wakeups] if wakeups else [])),
    ]
    if server_side:
        clicked = stats.clicked or 0.0
        full_gcs = [seconds for _, seconds, generation in server_side["gc"] if generation == 2]
        middle_gcs = [seconds for _, seconds, generation in server_side["gc"] if generation == 1]
        rows[5:5] = [("  server side: 304 sent past the wait p50/p99/max (ms)", p(server_side["late"])),
                     ("  server side: web loop lag p50/p99/max (ms)", p([lag for _, lag in server_side["lag"]])),
                     ("    before the click / from the click on, p99 / max (ms)",
                      f"{p99max([lag for at, lag in server_side['lag'] if at < clicked])} / "
                      f"{p99max([lag for at, lag in server_side['lag'] if at >= clicked])}"),
                     ("  server side: full GC collections, count / max (ms)",
                      f"{len(full_gcs)} / {max(full_gcs, default=0) * 1000:.1f}"),
                     ("  server side: generation-1 collections, count / over 10 ms / max (ms)",
                      f"{len(middle_gcs)} / {sum(s > 0.01 for s in middle_gcs)} / {max(middle_gcs, default=0) * 1000:.1f}"),
                     ("  server side: objects a full GC walks (gen 0+1+2) / frozen, per process at the end",
                      ", ".join(f"{sum(t[:3]):,} / {t[3]:,}" for t in server_side["tracked"]))]
    for i, port in enumerate(ports):
        where = "took the click" if i == 0 else "woken through Redis"
        rows.append((f"  web {i} ({where}) p50/p99/max (ms)", p(wakeups_by_web.get(port, []))))
    rows.append(("web CPU s per 1,000 answers (polls, posts; load-independent)",
                 f"{web_cpu * 1000 / max(requests, 1):.2f} ({web_cpu:.1f} s for {requests})"))
    if workers:
        rows.append(("worker CPU s per 1,000 posts", f"{(cpu_seconds(workers) - worker_cpu_start) * 1000 / max(len(stats.posts), 1):.2f}"))
        rows.append(("decision-log events accepted / stored", f"{stats.events_accepted} / {stored.get('events', '-')}"))
        rows.append(("worker RSS (MiB)", f"{total_rss(workers):.0f}"))
    rows.append(("errors", json.dumps(stats.errors) if stats.errors else "none"))
    return cpu_rows + rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sidecars", type=int, default=1000)
    parser.add_argument("--wait", type=int, default=10, help="long_polling_timeout_seconds")
    parser.add_argument("--web", type=int, default=2, help="web (uvicorn) processes")
    parser.add_argument("--port", type=int, default=0, help="first web port (default: free ports)")
    parser.add_argument("--no-worker", action="store_true", help="no Celery worker (uploads stored in requests)")
    parser.add_argument("--resource", choices=["combined", "registry"], default="registry")
    parser.add_argument("--load-procs", type=int, default=1, help="load-generating processes")
    parser.add_argument("--server-probe", action="store_true", help="measure 304 lateness inside the web processes")
    parser.add_argument("--no-cpu-phases", action="store_true", help="skip the CPU per request kind phases")
    parser.add_argument("--tree", type=Path, default=ROOT,
                        help="the source tree the web tier runs (e.g. an older worktree, for a before/after)")
    parser.add_argument("--load-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_child:
        load_child(json.loads(args.load_child))
        return
    global TREE
    TREE = args.tree.resolve()
    env = {**bench_env(redis=True), "PYTHONPATH": str(TREE)}
    args.env = env
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=TREE, env=env, check=True, timeout=600)
    seeded = subprocess.run([PYTHON, "-c", SEED, uuid.uuid4().hex[:6]], cwd=TREE, env=env, check=True,
                            capture_output=True, text=True, timeout=300)
    seed = json.loads(seeded.stdout.strip().splitlines()[-1])
    load = os.getloadavg()
    with web_tier(env, args.web, args.port, not args.no_worker, args.server_probe) as (ports, servers, workers):
        rows = asyncio.run(asyncio.wait_for(run(ports, servers, workers, seed, args), 900))
    print(f"\nSidecar fleet ({TREE}): uvicorn ({args.web} process(es)){'' if args.no_worker else ' + 1 Celery worker'}, "
          f"PostgreSQL, Redis, {os.cpu_count()} CPUs (shared), Python {sys.version.split()[0]}, "
          f"resource {args.resource}, load average at start {load[0]:.2f} / at end {os.getloadavg()[0]:.2f}\n")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
