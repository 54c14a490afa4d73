"""Bundle service (OPA Bundle Service API) under load, on this machine, over loopback.

Starts uvicorn (one process, the ASGI app) on 127.0.0.1 at a free port against the current
database: SQLite under a temporary WARDEN_VAR_DIR by default, or DATABASE_URL / REDIS_URL
when set. Seeds two environments with signed bundles, an agent and tokens, then measures:

  1. conditional GETs (If-None-Match = current ETag) answered 304 per second, with
     latency percentiles, from concurrent keep-alive connections;
  2. N concurrent long polls (Prefer: modes=snapshot,delta;wait=60) held at once, with the
     server's resident memory (VmRSS) and thread count before and while holding them;
  3. the time from a promotion, then from an agent's suspension (POST to the agents API,
     "the click"), to the long polls' answers carrying the new bundle.

Prints a table; asserts nothing. Targets (shared/DESIGN.md): >= 1,000 304s/s; 500 long
polls; suspended agent at the sidecar <= 2 s after the click.

    .venv/bin/python bench/bundle_service.py [--requests 10000] [--concurrency 32] [--long-polls 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DEADLINE_SECONDS = 240  # the whole run is abandoned after this

# ---------------------------------------------------------------------------------------------
# Child process parts (Django imported only there, so the load generator stays lean).

SERVER = r"""
import sys, types
import django
from django.conf import settings
django.setup()
from django.urls import include, path, resolve, Resolver404
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
import controlplane.urls as project_urls

@csrf_exempt
def promote(request):
    from django.contrib.auth import get_user_model
    from controlplane.bundles.models import Environment
    from controlplane.bundles.services import promote_bundle
    src, dst = request.GET["from"], request.GET["to"]
    user = get_user_model().objects.get(username=request.GET["user"])
    bundle = promote_bundle(Environment.objects.get(name=src), to=Environment.objects.get(name=dst), by=user)
    return JsonResponse({"etag": bundle.etag})

patterns = [path("bench/promote", promote)]
try:
    resolve("/opa/status")
except Resolver404:  # controlplane/urls.py does not mount the OPA endpoints yet
    patterns += [path("opa/", include("controlplane.opa.urls")),
                 path("api/v1/", include("controlplane.opa.api.urls"))]
module = types.ModuleType("bench_bundle_service_urls")
module.urlpatterns = patterns + list(project_urls.urlpatterns)
sys.modules[module.__name__] = module
settings.ROOT_URLCONF = module.__name__

import uvicorn
from controlplane.asgi import application
from controlplane.opa.asgi import BundleServiceFastPath
if not isinstance(application, BundleServiceFastPath) and "--django-only" not in sys.argv:
    application = BundleServiceFastPath(application)  # as controlplane/asgi.py is to install it
uvicorn.run(application, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", lifespan="off",
            backlog=4096, timeout_keep_alive=120)
"""

SEED = r"""
import json, sys
import django
django.setup()
from controlplane.accounts import services as account_services
from controlplane.bundles import services as bundles
from controlplane.identity.services import register_agent
from tests.accounts.factories import UserFactory

tag = sys.argv[1]
user = UserFactory(username=f"bench-{tag}", roles=["admin"])
_, api_token = account_services.create_token(user=user, name="bench", by=user)
src = bundles.create_environment(name=f"b{tag}-src", by=user)
dst = bundles.create_environment(name=f"b{tag}-dst", by=user, position=1)
register_agent(name=f"bench-agent-{tag}", owner_email="bench@example.com", by=user,
               environments=[src.name, dst.name], scopes=["read:tickets"])
bundles.publish_policies(src, by=user)
src.refresh_from_db()
_, src_token = bundles.create_environment_token(src, name="bench", by=user)
_, dst_token = bundles.create_environment_token(dst, name="bench", by=user)
print(json.dumps({"user": user.username, "api_token": api_token, "src": src.name, "dst": dst.name,
                  "src_token": src_token, "dst_token": dst_token, "src_etag": src.active_bundle.etag,
                  "agent": f"bench-agent-{tag}"}))
"""

# ---------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 keep-alive client: the measuring side must cost less than the server.


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port, limit=1 << 20))

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict, bytes]:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in headers.items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        parsed = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                parsed[name.strip().lower()] = value.strip()
        length = int(parsed.get("content-length", "0"))
        return status, parsed, (await self.reader.readexactly(length) if length else b"")

    def close(self) -> None:
        self.writer.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return fields


def rss_mib(pid: int) -> float:
    return int(proc_status(pid)["VmRSS"].split()[0]) / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()


async def wait_until_up(port: int, server: subprocess.Popen) -> None:
    for _ in range(300):
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            conn = await Connection.open(port)
            status, _, _ = await conn.request("GET", "/healthz", {})
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("the server did not start within 30 s")


async def conditional_gets(port: int, seed: dict, *, total: int, concurrency: int, max_seconds: float):
    headers = {"Authorization": f"Bearer {seed['src_token']}", "Prefer": "modes=snapshot,delta",
               "If-None-Match": seed["src_etag"], "User-Agent": "Open Policy Agent/1.4.2 (linux, amd64)"}
    path = f"/opa/bundles/{seed['src']}"
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    remaining = [total]
    deadline = time.perf_counter() + max_seconds

    async def worker():
        conn = await Connection.open(port)
        try:
            while remaining[0] > 0 and time.perf_counter() < deadline:
                remaining[0] -= 1
                started = time.perf_counter()
                status, _, _ = await conn.request("GET", path, headers)
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            conn.close()

    # Warm up (token and ETag caches, code paths) before timing.
    warm = await Connection.open(port)
    for _ in range(50):
        await warm.request("GET", path, headers)
    warm.close()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return statuses, latencies, elapsed


async def long_polls_through_change(port: int, server_pid: int, seed: dict, *, count: int, change: str, etag: str):
    """Hold `count` long polls on the destination environment, make `change`, and time the answers."""
    headers = {"Authorization": f"Bearer {seed['dst_token']}", "Prefer": "modes=snapshot,delta;wait=60",
               "User-Agent": "Open Policy Agent/1.4.2 (linux, amd64)"}
    if etag:
        headers["If-None-Match"] = etag
    path = f"/opa/bundles/{seed['dst']}"
    connections = []
    for _ in range(count):  # opened first, so the polls start together
        connections.append(await Connection.open(port))
    answered_at: list[float] = []
    results: list[tuple[int, dict]] = []

    async def poll(conn: Connection):
        status, response_headers, _ = await conn.request("GET", path, headers)
        answered_at.append(time.time())
        results.append((status, response_headers))

    tasks = [asyncio.create_task(poll(conn)) for conn in connections]
    await asyncio.sleep(3)  # every poll reaches the server and is held
    held = sum(1 for task in tasks if not task.done())
    status = proc_status(server_pid)
    holding = {"held": held, "rss": rss_mib(server_pid), "threads": int(status["Threads"])}
    control = await Connection.open(port)
    clicked = time.time()
    if change == "promote":
        reply, _, body = await control.request(
            "POST", f"/bench/promote?from={seed['src']}&to={seed['dst']}&user={seed['user']}", {})
    else:
        reply, _, body = await control.request(
            "POST", f"/api/v1/agents/{seed['agent']}/suspend/",
            {"Authorization": f"Token {seed['api_token']}", "Content-Type": "application/json"},
            json.dumps({"reason": "bench"}).encode())
    committed = time.time()
    control.close()
    if reply >= 300:
        raise SystemExit(f"{change} failed: {reply} {body[:300]!r}")
    _, pending = await asyncio.wait(tasks, timeout=30)
    for task in pending:
        task.cancel()
    for conn in connections:
        conn.close()
    new_etags = {h.get("etag") for s, h in results if s == 200}
    latencies = [t - clicked for t in answered_at]
    return {
        **holding,
        "answered_200": sum(1 for s, _ in results if s == 200),
        "new_etag": next(iter(new_etags)) if len(new_etags) == 1 else None,
        "change_seconds": committed - clicked,
        "first": min(latencies) if latencies else float("nan"),
        "median": statistics.median(latencies) if latencies else float("nan"),
        "last": max(latencies) if latencies else float("nan"),
    }


async def measure(port: int, server: subprocess.Popen, seed: dict, args) -> list[tuple[str, str, str]]:
    await wait_until_up(port, server)
    baseline_rss = rss_mib(server.pid)
    statuses, latencies, elapsed = await conditional_gets(
        port, seed, total=args.requests, concurrency=args.concurrency, max_seconds=60)
    answered_304 = statuses.get(304, 0)
    rows = [
        ("304 answers / s", f"{answered_304 / elapsed:,.0f}", ">= 1,000"),
        ("  requests, concurrency", f"{sum(statuses.values())}, {args.concurrency}", ""),
        ("  statuses", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())), "all 304"),
        ("  latency p50 / p99 (ms)", f"{percentile(latencies, .5) * 1e3:.2f} / {percentile(latencies, .99) * 1e3:.2f}", ""),
        ("server RSS idle (MiB)", f"{baseline_rss:.1f}", ""),
    ]
    promoted = await long_polls_through_change(
        port, server.pid, seed, count=args.long_polls, change="promote", etag="")
    rows += [
        (f"long polls held (of {args.long_polls})", str(promoted["held"]), ">= 500"),
        ("  server RSS holding them (MiB)", f"{promoted['rss']:.1f}", ""),
        ("  server threads holding them", str(promoted["threads"]), ""),
        ("promote: call returned (s)", f"{promoted['change_seconds']:.3f}", ""),
        ("  answers 200 with the new bundle", str(promoted["answered_200"]), f"{args.long_polls}"),
        ("  click → answer first/median/last (s)",
         f"{promoted['first']:.3f} / {promoted['median']:.3f} / {promoted['last']:.3f}", "<= 2"),
    ]
    suspended = await long_polls_through_change(
        port, server.pid, seed, count=args.long_polls, change="suspend", etag=promoted["new_etag"] or "")
    rows += [
        ("suspend (agents API): call returned (s)", f"{suspended['change_seconds']:.3f}", ""),
        ("  long polls held before the click", str(suspended["held"]), ""),
        ("  answers 200 with the new bundle", str(suspended["answered_200"]), f"{args.long_polls}"),
        ("  click → answer first/median/last (s)",
         f"{suspended['first']:.3f} / {suspended['median']:.3f} / {suspended['last']:.3f}", "<= 2"),
        ("server RSS at the end (MiB)", f"{rss_mib(server.pid):.1f}", ""),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="conditional GETs to time")
    parser.add_argument("--concurrency", type=int, default=32, help="keep-alive connections for the 304 load")
    parser.add_argument("--long-polls", type=int, default=500)
    parser.add_argument("--django-only", action="store_true",
                        help="measure the Django view alone, without the ASGI fast path")
    args = parser.parse_args()

    env = dict(os.environ, DJANGO_SETTINGS_MODULE="controlplane.settings", PYTHONPATH=str(ROOT),
               WARDEN_LOG_LEVEL="WARNING")
    temp = None
    if not env.get("DATABASE_URL"):
        temp = tempfile.TemporaryDirectory(prefix="warden-bench-")
        env["WARDEN_VAR_DIR"] = temp.name
    database = "PostgreSQL" if env.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
    notify = "Redis pub/sub" if env.get("REDIS_URL") else "in-process"
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120)
    seeded = subprocess.run([PYTHON, "-c", SEED, uuid.uuid4().hex[:8]], cwd=ROOT, env=env, check=True,
                            capture_output=True, text=True, timeout=120)
    seed = json.loads(seeded.stdout.strip().splitlines()[-1])

    port = free_port()
    server_args = [PYTHON, "-c", SERVER, str(port)] + (["--django-only"] if args.django_only else [])
    server = subprocess.Popen(server_args, cwd=ROOT, env=env)
    try:
        rows = asyncio.run(asyncio.wait_for(measure(port, server, seed, args), DEADLINE_SECONDS))
    finally:
        stop(server)
        if temp is not None:
            temp.cleanup()

    path = "Django view only" if args.django_only else "ASGI fast path"
    print(f"\nBundle service ({path}): uvicorn (1 process) on 127.0.0.1, {database}, notify {notify}, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>28}  target")
    print(f"{'-' * width}  {'-' * 28}  ------")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>28}  {target}")


if __name__ == "__main__":
    main()
