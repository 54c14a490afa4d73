"""Decision latency through `warden sidecar` over loopback HTTP, beside the same decisions
made in-process by the embedded engine, measured in the same run.

    python bench/sidecar_decisions.py [--rates 1000,5000] [--seconds 20] [--clients 2] [--decisions 10000]
                                      [--rss-every 1] [--port 0] [--decision-logs on|off]

DESIGN.md's targets for the sidecar, decision logs on: p99 <= 1 ms at 1,000 decisions/s and
<= 2 ms at 5,000/s. Each rate runs for ``--seconds`` (no longer, even where the machine
cannot keep the rate: the rate achieved is printed) from ``--clients`` load processes (one
keep-alive connection each, open loop, rate shared between them); non-200 answers and
failed requests are counted as errors. The sidecar's RSS is sampled every ``--rss-every``
seconds and printed over time (a 10-minute soak: ``--rates 1000 --seconds 600 --rss-every 10``),
with the decision-log counters the sidecar reports (uploaded, dropped). The sidecar runs
as its own process with a signed bundle of the shipped policy library, served by a local
stand-in control plane in a third process (which also receives the sidecar's decision
logs and status: parsing those must not stall the load generator's clock); the client
sends at a fixed rate (open loop: latency counts from when each request was due, so a
stall shows up) and then back to back (closed loop). Prints figures; never asserts a
time. Loopback only, bounded in count. ``BENCH_REPO=/path/to/checkout`` measures that
tree's sidecar with this same script (before/after comparisons under the same load).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# BENCH_REPO=<another checkout> runs this same bench against that tree's sidecar (before/after).
REPO = Path(os.environ.get("BENCH_REPO") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(REPO))

from agents_sdk.engine import RegoEngine  # noqa: E402
from agents_sdk.tests.signed_bundles import RSASigner, build_bundle  # noqa: E402

INPUTS = [
    {"agent": {"id": "support-bot", "name": "support-bot", "owner": "alice@example.com", "scopes": ["read:tickets"]},
     "action": {"type": "tool_call", "tool": "ticket_read", "args": {"id": 1}},
     "context": {"session_id": "s", "environment": "prod", "time": "2026-01-01T00:00:00Z"}},
    {"agent": {"id": "support-bot"}, "action": {"type": "tool_call", "tool": "file_delete", "args": {"path": "/prod/x"}},
     "context": {"environment": "prod"}},
    {"agent": {"id": "support-bot"}, "action": {"type": "tool_call", "tool": "http_request",
                                                "args": {"url": "https://evil.test/"}}},
]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The stand-in control plane, run in its own process: prints its URL and key, serves until
# SIGTERM, then prints how many decision-log events it received and the last status report's
# decision-log counters. It counts and forgets uploads as they come (a soak sends millions).
STAND_IN = """
import json, signal, sys, threading
from agents_sdk.tests.signed_bundles import BundleServer, RSASigner, build_bundle
signer = RSASigner("k")
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
received = 0
with BundleServer() as server:
    server.state.publish(build_bundle(signer))
    print(json.dumps({"url": server.url, "public_pem": signer.public_pem}), flush=True)
    while not done.wait(1.0) or server.state.log_uploads:
        while server.state.log_uploads:
            received += len(server.state.log_uploads.pop(0)["events"])
    reports = [r["report"] for r in server.state.status_reports]
    last = next((r["decision_logs"] for r in reversed(reports) if "decision_logs" in r), {})
    print(json.dumps({"received": received, "status": last.get("metrics", {})}), flush=True)
"""


def start_stand_in() -> tuple[subprocess.Popen, str, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", STAND_IN], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    started = json.loads(process.stdout.readline())
    return process, started["url"], started["public_pem"]


def start_sidecar(server_url: str, public_pem: str, workdir: str, port: int = 0,
                  decision_logs: bool = True) -> tuple[subprocess.Popen, int]:
    config: dict = {
        "services": {"cp": {"url": server_url, "credentials": {"bearer": {"token": "env-token"}}}},
        "keys": {"k": {"key": public_pem}},
        "bundles": {"prod": {"signing": {"keyid": "k"}, "polling": {"long_polling_timeout_seconds": 30}}},
        "decision_logs": {"service": "cp", "reporting": {"min_delay_seconds": 1, "max_delay_seconds": 2}},
        "status": {"service": "cp"},
        "persistence_directory": workdir,
    }
    if not decision_logs:
        del config["decision_logs"]
    path = Path(workdir) / "config.json"
    path.write_text(json.dumps(config))
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "agents_sdk", "sidecar", "--config", str(path), "--addr", f"127.0.0.1:{port}"],
        env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.DEVNULL,
    )
    for _ in range(400):
        try:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            probe.request("GET", "/health")
            if probe.getresponse().status == 200:
                return process, port
        except OSError:
            pass
        time.sleep(0.05)
    process.terminate()
    raise SystemExit("the sidecar did not become healthy")


def load(port: int, rate: float, seconds: float, start_at: float, offset: float, results: multiprocessing.Queue) -> None:
    """One client process: ``rate`` requests/s for ``seconds`` from ``start_at`` (open loop)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.connect()
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    bodies = [json.dumps({"input": item}).encode() for item in INPUTS]
    latencies, errors = [], 0
    total = int(rate * seconds)
    stop_at = start_at + seconds
    for index in range(total):
        due = start_at + (index + offset) / rate
        now = time.perf_counter()
        if now < due:
            time.sleep(due - now)
        elif now > stop_at:
            break  # a machine that cannot keep the rate: the run still lasts ``seconds`` ("got N/s")
        try:
            connection.request("POST", "/v1/data/warden/decision", body=bodies[index % len(bodies)],
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            errors += response.status != 200
        except (OSError, http.client.HTTPException):
            errors += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        latencies.append(time.perf_counter() - due)
    results.put((latencies, errors))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process: per request, a figure the machine's load barely moves."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_loop(port: int, pid: int, rate: float, seconds: float, clients: int,
              rss_every: float = 1.0) -> tuple[list[float], int, list[int], float, float]:
    """Latencies, errors, the sidecar's RSS (KiB) over time, the rate achieved, and the
    sidecar's CPU seconds per request (decision logs and status included)."""
    results: multiprocessing.Queue = multiprocessing.Queue()
    cpu_before = cpu_seconds(pid)
    start_at = time.perf_counter() + 0.5
    workers = [multiprocessing.Process(target=load, args=(port, rate / clients, seconds, start_at, i / clients, results))
               for i in range(clients)]
    for worker in workers:
        worker.start()
    rss = []
    next_sample = time.perf_counter()
    while any(worker.is_alive() for worker in workers) and results.qsize() < clients:
        if time.perf_counter() >= next_sample:
            rss.append(rss_kib(pid))
            next_sample += rss_every
        time.sleep(0.2)
    latencies: list[float] = []
    errors = 0
    for _ in workers:
        got, failed = results.get()
        latencies.extend(got)
        errors += failed
    elapsed = time.perf_counter() - start_at
    for worker in workers:
        worker.join()
    rss.append(rss_kib(pid))
    cpu = (cpu_seconds(pid) - cpu_before) / max(1, len(latencies))
    return latencies, errors, rss, len(latencies) / elapsed, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--rates", default="1000,5000", help="comma-separated open-loop rates (requests/s)")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each open-loop rate")
    parser.add_argument("--clients", type=int, default=2, help="load processes sharing each rate")
    parser.add_argument("--rss-every", type=float, default=1.0, help="seconds between samples of the sidecar's RSS")
    parser.add_argument("--port", type=int, default=0, help="the sidecar's port (default: a free one)")
    parser.add_argument("--decision-logs", choices=("on", "off"), default="on")
    args = parser.parse_args()
    logs_on = args.decision_logs == "on"
    print(f"load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    soak: list[tuple[str, list[int], int]] = []

    bundle = build_bundle(RSASigner("k"))  # the same policies and data, for the in-process run
    rows = []
    stand_in, server_url, public_pem = start_stand_in()
    with tempfile.TemporaryDirectory() as workdir:
        process, port = start_sidecar(server_url, public_pem, workdir, args.port, logs_on)
        try:
            bodies = [json.dumps({"input": item}).encode() for item in INPUTS]

            def connect() -> http.client.HTTPConnection:
                connection = http.client.HTTPConnection("127.0.0.1", port)
                connection.connect()
                connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return connection

            connection = connect()

            def ask(index: int) -> None:
                connection.request("POST", "/v1/data/warden/decision", body=bodies[index % len(bodies)],
                                   headers={"Content-Type": "application/json"})
                connection.getresponse().read()

            for index in range(2000):  # warm-up
                ask(index)
            for rate in (float(r) for r in args.rates.split(",")):
                latencies, errors, rss, achieved, cpu = open_loop(port, process.pid, rate, args.seconds, args.clients,
                                                                  args.rss_every)
                name = f"sidecar, logs {args.decision_logs}, {rate:.0f}/s (got {achieved:.0f}/s)"
                print(f"{name}: sidecar CPU {cpu * 1e6:.0f} µs per request", flush=True)
                rows.append((name, latencies))
                soak.append((name, rss, errors))
                print(f"{name}: {len(latencies)} requests, {errors} errors, sidecar RSS MiB every {args.rss_every:g} s: "
                      + " ".join(f"{kib / 1024:.0f}" for kib in rss), flush=True)
            connection.close()
            connection = connect()  # the warm-up's connection sat idle past the keep-alive timeout
            closed = []
            for index in range(args.decisions):
                began = time.perf_counter()
                ask(index)
                closed.append(time.perf_counter() - began)
            rows.append(("sidecar, closed loop (back to back)", closed))
            sent = 2000 + sum(len(values) for _, values in rows)
        finally:
            process.terminate()
            process.wait(10)  # the sidecar flushes its decision logs as it stops
            stand_in.terminate()
            stand_in.wait(30)
        counted = json.loads(stand_in.stdout.readline() or "{}")

    # The same decisions in-process, as the embedded backend makes them.
    modules = {name: content.decode("utf-8") for name, content in bundle.files.items() if name.endswith(".rego")}
    policy = RegoEngine().compile(modules, json.loads(bundle.files["data.json"]))
    for index in range(2000):
        policy.decide(INPUTS[index % len(INPUTS)])
    embedded = []
    for index in range(args.decisions):
        began = time.perf_counter()
        policy.decide(INPUTS[index % len(INPUTS)])
        embedded.append(time.perf_counter() - began)
    rows.append(("embedded engine, in process", embedded))

    base = percentile(embedded, 0.5)
    print(f"{'path':<48} {'p50 µs':>9} {'p99 µs':>9} {'p99.9 µs':>9} {'p50 vs embedded':>16}")
    for name, values in rows:
        p50, p99, p999 = (percentile(values, f) * 1e6 for f in (0.5, 0.99, 0.999))
        print(f"{name:<48} {p50:>9.0f} {p99:>9.0f} {p999:>9.0f} {percentile(values, 0.5) / base:>15.1f}x")
    print("target (DESIGN.md): sidecar p99 <= 1,000 µs at 1,000 decisions/s, <= 2,000 µs at 5,000/s (decision logs on)")
    print(f"load average at end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    if logs_on:
        print(f"decision logs: {sent} decisions, {counted.get('received')} events received by the control plane; "
              f"last status counters {counted.get('status')}")
    print(f"\n{'open-loop run':<48} {'requests':>9} {'errors':>7}   sidecar RSS MiB, every {args.rss_every:g} s")
    for (name, rss, errors), (_, values) in zip(soak, rows, strict=False):
        shown = " ".join(f"{kib / 1024:.0f}" for kib in rss)
        print(f"{name:<48} {len(values):>9} {errors:>7}   {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
