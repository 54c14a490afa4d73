"""Decision latency through `warden sidecar` over loopback HTTP, beside the same decisions
made in-process by the embedded engine, measured in the same run.

    python bench/sidecar_decisions.py [--rates 1000,5000] [--seconds 20] [--clients 2] [--decisions 10000]
                                      [--rss-every 1] [--port 0] [--decision-logs on|off]
                                      [--soak-seconds 600 --soak-every 30] [--pin]

DESIGN.md's targets for the sidecar, decision logs on: p99 <= 1 ms at 1,000 decisions/s and
<= 2 ms at 5,000/s. Each rate runs for ``--seconds`` (no longer, even where the machine
cannot keep the rate: the rate achieved is printed) from ``--clients`` load processes (one
keep-alive connection each, open loop, rate shared between them); non-200 answers and
failed requests are counted as errors. The sidecar's RSS is sampled every ``--rss-every``
seconds and printed over time, with the decision-log counters the sidecar reports (uploaded,
dropped). ``--soak-seconds 600`` adds a 10-minute run at 1,000/s after the rates, printing
the RSS of the sidecar and of its decision-log process every ``--soak-every`` seconds as
it goes. The sidecar's CPU per request is printed for the serving process and for its
decision-log process (the `warden sidecar` command uploads from a child process; before
that change the second figure is 0 and the uploads are in the first). ``--pin`` runs the
sidecar on CPU 0 and this script, its load processes and the stand-in on CPU 1 (taskset),
so that the load generator never takes the sidecar's core; unpinned is the default. The sidecar runs
as its own process with a signed bundle of the shipped policy library, served by a local
stand-in control plane in a third process (which also receives the sidecar's decision
logs and status: parsing those must not stall the load generator's clock); the client
sends at a fixed rate (open loop: latency counts from when each request was due, so a
stall shows up) and then back to back (closed loop). Prints figures; never asserts a
time. Loopback only, bounded in count. ``BENCH_REPO=/path/to/checkout`` measures that
tree's sidecar with this same script (before/after comparisons under the same load);
``BENCH_SIDECAR_LOG=<file>`` appends the sidecar's log (its warnings of dropped events) there.
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
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
    )
    started = json.loads(process.stdout.readline())
    return process, started["url"], started["public_pem"]


def start_sidecar(server_url: str, public_pem: str, workdir: str, port: int = 0,
                  decision_logs: bool = True, pin: bool = False) -> tuple[subprocess.Popen, int]:
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
        (["taskset", "-c", "0"] if pin else [])
        + [sys.executable, "-m", "agents_sdk", "sidecar", "--config", str(path), "--addr", f"127.0.0.1:{port}"],
        # cwd: `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH.
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
        stderr=open(os.environ["BENCH_SIDECAR_LOG"], "a") if os.environ.get("BENCH_SIDECAR_LOG") else subprocess.DEVNULL,  # noqa: SIM115
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
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The sidecar's child processes (its decision-log process), live ones only."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return found


def family_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of the sidecar process and of its children."""
    return cpu_seconds(pid), sum(cpu_seconds(child) for child in children(pid))


def open_loop(port: int, pid: int, rate: float, seconds: float, clients: int, rss_every: float = 1.0,
              live: bool = False) -> tuple[list[float], int, list[int], float, tuple[float, float]]:
    """Latencies, errors, the sidecar's RSS (KiB) over time, the rate achieved, and the
    sidecar's CPU seconds per request (decision logs and status included): its own and its
    decision-log process's. ``live``: print each RSS sample as it is taken (a soak)."""
    results: multiprocessing.Queue = multiprocessing.Queue()
    cpu_before = family_cpu(pid)
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
            if live:
                elapsed = time.perf_counter() - start_at
                logs = sum(rss_kib(child) for child in children(pid))
                print(f"  soak t={elapsed:5.0f} s: sidecar RSS {rss[-1] / 1024:.1f} MiB, "
                      f"decision-log process RSS {logs / 1024:.1f} MiB", flush=True)
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
    cpu_after = family_cpu(pid)
    cpu = tuple((after - before) / max(1, len(latencies)) for after, before in zip(cpu_after, cpu_before, strict=True))
    return latencies, errors, rss, len(latencies) / elapsed, cpu  # type: ignore[return-value]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--rates", default="1000,5000", help="comma-separated open-loop rates (requests/s)")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each open-loop rate")
    parser.add_argument("--clients", type=int, default=2, help="load processes sharing each rate")
    parser.add_argument("--rss-every", type=float, default=1.0, help="seconds between samples of the sidecar's RSS")
    parser.add_argument("--port", type=int, default=0, help="the sidecar's port (default: a free one)")
    parser.add_argument("--decision-logs", choices=("on", "off"), default="on")
    parser.add_argument("--soak-seconds", type=float, default=0.0, help="then 1,000/s for this long, RSS printed live")
    parser.add_argument("--soak-every", type=float, default=30.0, help="seconds between RSS samples of the soak")
    parser.add_argument("--pin", action="store_true", help="sidecar on CPU 0, load generator and stand-in on CPU 1")
    args = parser.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {1})  # inherited by the load processes and the stand-in
    logs_on = args.decision_logs == "on"
    print(f"load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    soak: list[tuple[str, list[int], int]] = []

    bundle = build_bundle(RSASigner("k"))  # the same policies and data, for the in-process run
    rows = []
    stand_in, server_url, public_pem = start_stand_in()
    with tempfile.TemporaryDirectory() as workdir:
        process, port = start_sidecar(server_url, public_pem, workdir, args.port, logs_on, args.pin)
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
            runs = [(float(r), args.seconds, args.rss_every, "") for r in args.rates.split(",") if r]
            if args.soak_seconds:
                runs.append((1000.0, args.soak_seconds, args.soak_every, "soak, "))
            for rate, seconds, every, kind in runs:
                if kind:
                    print(f"soak: 1000/s for {seconds:g} s, RSS every {every:g} s", flush=True)
                stand_in_cpu = cpu_seconds(stand_in.pid)
                latencies, errors, rss, achieved, cpu = open_loop(port, process.pid, rate, seconds, args.clients,
                                                                  every, live=bool(kind))
                stand_in_cpu = (cpu_seconds(stand_in.pid) - stand_in_cpu) / seconds
                name = f"sidecar, {kind}logs {args.decision_logs}, {rate:.0f}/s (got {achieved:.0f}/s)"
                print(f"{name}: sidecar CPU {(cpu[0] + cpu[1]) * 1e6:.0f} µs per request (serving process "
                      f"{cpu[0] * 1e6:.0f}, decision-log process {cpu[1] * 1e6:.0f}); the stand-in control "
                      f"plane (receiving the logs) used {stand_in_cpu:.0%} of a core", flush=True)
                rows.append((name, latencies))
                soak.append((name, rss, errors))
                print(f"{name}: {len(latencies)} requests, {errors} errors, sidecar RSS MiB every {every:g} s: "
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
    print(f"\n{'open-loop run':<48} {'requests':>9} {'errors':>7}   sidecar RSS MiB, every {args.rss_every:g} s"
          + (f" (soak: every {args.soak_every:g} s)" if args.soak_seconds else ""))
    for (name, rss, errors), (_, values) in zip(soak, rows, strict=False):
        shown = " ".join(f"{kib / 1024:.0f}" for kib in rss)
        print(f"{name:<48} {len(values):>9} {errors:>7}   {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
