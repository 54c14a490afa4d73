"""Decision latency through `warden sidecar` over loopback HTTP, beside the same decisions
made in-process by the embedded engine, measured in the same run.

    python bench/sidecar_decisions.py [--rates 1000,5000] [--seconds 20] [--clients 2] [--decisions 10000]
                                      [--rss-every 1] [--port 0] [--decision-logs on|off]
                                      [--soak-seconds 600 --soak-every 30] [--pin]
                                      [--generator raw|http.client] [--distinct] [--in-process N]

DESIGN.md's targets for the sidecar, decision logs on: p99 <= 1 ms at 1,000 decisions/s and
<= 2 ms at 5,000/s. Each rate runs for ``--seconds`` (no longer, even where the machine
cannot keep the rate: the rate achieved is printed) from ``--clients`` load processes (one
keep-alive connection each, open loop, rate shared between them); non-200 answers and
failed requests are counted as errors.

What is measured, and what is the generator's: latency counts from when each request was
due (open loop, so a stall of the sidecar also delays the requests queued behind it on
that connection: coordinated omission is counted, not hidden). The load processes send
prebuilt request bytes on a raw socket and read each answer by its Content-Length (a few
µs of Python; ``--generator http.client`` is this bench's earlier client, several times
the CPU, kept to compare) with a 1 µs timer slack. For every run the bench also prints the
service time (from when the request was actually sent) and the generator's own lag: how
late a load process sent a request it was free to send (its sleep overshooting, its wait
for a core), which is in the latency from when due but is not the sidecar's doing.

The load sends the three sample inputs in turn, as an agent repeats its calls (the sidecar
answers a repeated body from its table of answers, the engine from its decision cache);
``--distinct`` makes every request a different input, so that each is decided in full.

The sidecar's RSS is sampled every ``--rss-every`` seconds and printed over time, with the
decision-log events it dropped during each run (from its ``GET /metrics``; "-" for a tree
without it) and, at the end, how many events the control plane received against how many
decisions were made. ``--soak-seconds 600`` adds a 10-minute run at 1,000/s after the
rates, printing the RSS of the sidecar and of its decision-log process every
``--soak-every`` seconds as it goes. The sidecar's CPU per request is printed for the
serving process and for its decision-log process (the `warden sidecar` command uploads
from a child process), and the load generator's. ``--pin`` runs the sidecar on CPU 0 and
its decision-log process, this script, its load processes and the stand-in on CPU 1
(taskset, sched_setaffinity), so that nothing but the serving process takes its core;
unpinned is the default. The sidecar runs as its own process with a signed bundle of the
shipped policy library, served by a local stand-in control plane in another process (which
also receives the sidecar's decision logs and status). Prints figures; never asserts a
time. Loopback only, bounded in count. ``BENCH_REPO=/path/to/checkout`` measures that
tree's sidecar with this same script (before/after comparisons under the same load);
``BENCH_SIDECAR_LOG=<file>`` appends the sidecar's log (its warnings of dropped events) there.
``--in-process N`` only pushes N requests through the sidecar's HTTP protocol and handler
in this process (no sockets, decision logs on): the per-request Python cost, e.g. under
``valgrind --tool=callgrind`` at two N for instructions per request.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
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
from typing import Any

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


def write_config(server_url: str, public_pem: str, workdir: str, decision_logs: bool = True) -> Path:
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
    return path


def start_sidecar(server_url: str, public_pem: str, workdir: str, port: int = 0,
                  decision_logs: bool = True, pin: bool = False) -> tuple[subprocess.Popen, int]:
    path = write_config(server_url, public_pem, workdir, decision_logs)
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
                if pin:  # the decision-log process inherited CPU 0: its uploads go beside the generator
                    for child in children(process.pid):
                        os.sched_setaffinity(child, {1})
                return process, port
        except OSError:
            pass
        time.sleep(0.05)
    process.terminate()
    raise SystemExit("the sidecar did not become healthy")


def _fine_timer_slack() -> None:
    """Ask the kernel to wake this process's sleeps within 1 µs of when they are due (its
    default slack is 50 µs): the generator's own lateness, not the sidecar's, is then small."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK, ns
    except (OSError, AttributeError):
        pass


def raw_request(body: bytes) -> bytes:
    return (b"POST /v1/data/warden/decision HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


def read_answer(sock: socket.socket, buffer: bytearray) -> int:
    """Read one whole HTTP answer (Content-Length framed, as the sidecar sends) from ``sock``;
    its status. Bytes of a next answer stay in ``buffer``."""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            length = 0
            for line in bytes(buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            total = end + 4 + length
            if len(buffer) >= total:
                status = int(buffer[9:12])
                del buffer[:total]
                return status
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the sidecar closed the connection")
        buffer += chunk


def distinct_bodies(count: int, client: float) -> list[bytes]:
    """``count`` request bodies, each a different input (its own context.session_id): none
    is a repeat, so the sidecar and the engine decide every one (``--distinct``)."""
    bodies = []
    for index in range(count):
        item = INPUTS[index % len(INPUTS)]
        context = {**item.get("context", {}), "session_id": f"bench-{client}-{index}"}
        bodies.append(json.dumps({"input": {**item, "context": context}}).encode())
    return bodies


def load(port: int, rate: float, seconds: float, start_at: float, offset: float, results: multiprocessing.Queue,
         generator: str = "raw", distinct: bool = False) -> None:
    """One client process: ``rate`` requests/s for ``seconds`` from ``start_at`` (open loop).

    Puts (samples, errors, CPU seconds of this process), one sample per request:
    (latency from when it was due, service time from when it was sent, the generator's own
    lag). The lag is how late this process sent a request it was free to send: send time
    minus the later of its due time and the previous answer's arrival (sleep overshoot,
    this process waiting for a core, building the request). Waiting for the previous answer
    is the sidecar's doing and stays in the latency (coordinated omission: latency counts
    from the due time); the lag is the generator's and is printed apart.

    ``generator``: "raw" sends prebuilt request bytes on a socket and reads the answer by
    its Content-Length (a few µs of Python per request); "http.client" is the generator this
    bench used before (http.client's request/getresponse, several times the CPU).
    """
    _fine_timer_slack()
    total = int(rate * seconds)
    bodies = distinct_bodies(total, offset) if distinct else [json.dumps({"input": item}).encode() for item in INPUTS]
    requests = [raw_request(body) for body in bodies]
    samples: list[tuple[float, float, float]] = []
    errors = 0
    stop_at = start_at + seconds
    clock = time.perf_counter
    cpu_started = time.process_time()

    def connect_raw() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def connect_client() -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    sock = connect_raw() if generator == "raw" else None
    connection = connect_client() if generator != "raw" else None
    buffer = bytearray()
    previous_done = 0.0
    for index in range(total):
        due = start_at + (index + offset) / rate
        now = clock()
        if now < due:
            time.sleep(due - now)
        elif now > stop_at:
            break  # a machine that cannot keep the rate: the run still lasts ``seconds`` ("got N/s")
        sent = clock()
        try:
            if sock is not None:
                sock.sendall(requests[index % len(requests)])
                errors += read_answer(sock, buffer) != 200
            else:
                assert connection is not None
                connection.request("POST", "/v1/data/warden/decision", body=bodies[index % len(bodies)],
                                   headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                errors += response.status != 200
        except (OSError, http.client.HTTPException):
            errors += 1
            if sock is not None:
                sock.close()
                sock, buffer = connect_raw(), bytearray()
            else:
                assert connection is not None
                connection.close()
                connection = connect_client()
        done = clock()
        samples.append((done - due, done - sent, sent - max(due, previous_done)))
        previous_done = done
    results.put((samples, errors, time.process_time() - cpu_started))


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


def sidecar_counters(port: int) -> dict[str, float] | None:
    """The sidecar's decision-log counters from ``GET /metrics`` (Prometheus text), or None
    where the tree measured has no such endpoint (BENCH_REPO of an older revision)."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
        connection.close()
    except (OSError, http.client.HTTPException):
        return None
    if response.status != 200:
        return None
    counters = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            counters[name] = float(value)
    return counters


@dataclasses.dataclass
class Run:
    """One open-loop run's figures."""

    latencies: list[float]  # from when each request was due (coordinated omission counted)
    service: list[float]  # from when each request was sent
    lags: list[float]  # the generator's own lateness in sending (see load())
    errors: int
    rss: list[int]  # the sidecar's RSS, KiB, over time
    achieved: float  # requests/s
    cpu: tuple[float, float]  # sidecar CPU seconds per request: serving process, decision-log process
    generator_cpu: float  # the load processes' CPU seconds per request
    dropped: float | None  # decision-log events the sidecar dropped during the run (None: not reported)


def open_loop(port: int, pid: int, rate: float, seconds: float, clients: int, rss_every: float = 1.0,
              live: bool = False, generator: str = "raw", distinct: bool = False) -> Run:
    """Run ``clients`` load processes at ``rate`` for ``seconds``; ``live``: print each RSS
    sample as it is taken (a soak)."""
    results: multiprocessing.Queue = multiprocessing.Queue()
    counters_before = sidecar_counters(port)
    cpu_before = family_cpu(pid)
    start_at = time.perf_counter() + 2.0  # the load processes build their requests first
    workers = [multiprocessing.Process(target=load, args=(port, rate / clients, seconds, start_at, i / clients,
                                                          results, generator, distinct))
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
    samples: list[tuple[float, float, float]] = []
    errors, generator_cpu = 0, 0.0
    for _ in workers:
        got, failed, cpu_used = results.get()
        samples.extend(got)
        errors += failed
        generator_cpu += cpu_used
    elapsed = time.perf_counter() - start_at
    for worker in workers:
        worker.join()
    rss.append(rss_kib(pid))
    cpu_after = family_cpu(pid)
    count = max(1, len(samples))
    cpu = tuple((after - before) / count for after, before in zip(cpu_after, cpu_before, strict=True))
    counters_after = sidecar_counters(port)
    dropped = None
    if counters_before is not None and counters_after is not None:
        name = "warden_decision_logs_dropped_total"
        dropped = counters_after.get(name, 0.0) - counters_before.get(name, 0.0)
    return Run([s[0] for s in samples], [s[1] for s in samples], [s[2] for s in samples], errors, rss,
               len(samples) / elapsed, cpu, generator_cpu / count, dropped)  # type: ignore[arg-type]


def in_process(count: int, server_url: str, public_pem: str, workdir: str, distinct: bool = False) -> None:
    """``count`` requests through the sidecar's own HTTP protocol and handler in this process,
    decision logs on (a child process uploads them, as `warden sidecar` does), no sockets:
    the per-request Python cost alone. For instruction counts, run it twice under callgrind
    with two counts and divide the difference (startup cancels out):
    ``valgrind --tool=callgrind python bench/sidecar_decisions.py --in-process 2000``."""
    import asyncio

    from agents_sdk.sidecar import Sidecar, load_config
    from agents_sdk.sidecar.serving import Connection

    path = write_config(server_url, public_pem, workdir, decision_logs=True)
    sidecar = Sidecar(load_config(str(path)), addr="127.0.0.1:0", decision_log_process=True)
    sidecar.freeze_heap = True
    assert sidecar.decision_logs is not None
    sidecar.decision_logs.start()
    sidecar.bundles.start()
    if not sidecar.bundles.wait_until_ready(600):  # slow under valgrind
        raise SystemExit("no bundle")

    class Transport(asyncio.Transport):
        written = 0

        def write(self, data: Any) -> None:
            self.written += 1

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return ("127.0.0.1", 40000) if name == "peername" else default

    transport = Transport()
    connection = Connection(sidecar._server)
    connection.connection_made(transport)
    requests = [raw_request(json.dumps({"input": item}).encode()) for item in INPUTS]
    for index in range(200):  # warm-up: the engine session, the decision cache
        connection.data_received(requests[index % len(requests)])
    if distinct:
        requests = [raw_request(body) for body in distinct_bodies(max(count, 5000), 0)]  # same set-up for any N <= 5000
    collections = [stats["collections"] for stats in gc.get_stats()]
    began, cpu_began = time.perf_counter(), time.process_time()
    for index in range(count):
        connection.data_received(requests[index % len(requests)])
    cpu = time.process_time() - cpu_began
    collections = [stats["collections"] - before for stats, before in zip(gc.get_stats(), collections, strict=True)]
    print(f"in process: {count} requests, {cpu / count * 1e6:.1f} µs CPU each "
          f"({(time.perf_counter() - began) / count * 1e6:.1f} µs wall), {transport.written} answers written; "
          f"garbage collections during them (generations 0, 1, 2): {collections}")
    sidecar.bundles.stop(timeout=0.5)
    sidecar.decision_logs.stop()


def lag_row(name: str, values: list[float]) -> str:
    p50, p99, p999, worst = (percentile(values, f) * 1e6 for f in (0.5, 0.99, 0.999, 1.0))
    return f"{name:<48} {p50:>9.0f} {p99:>9.0f} {p999:>9.0f} {worst:>9.0f}"


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
    parser.add_argument("--pin", action="store_true",
                        help="sidecar on CPU 0; its decision-log process, the load generator and the stand-in on CPU 1")
    parser.add_argument("--generator", choices=("raw", "http.client"), default="raw",
                        help="the load processes' HTTP client (http.client: this bench's earlier, costlier one)")
    parser.add_argument("--distinct", action="store_true",
                        help="every request a different input (no repeated answer, no engine cache hit)")
    parser.add_argument("--in-process", type=int, default=0, metavar="N",
                        help="only push N requests through the sidecar's protocol in this process (CPU per request)")
    args = parser.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {1})  # inherited by the load processes and the stand-in
    logs_on = args.decision_logs == "on"
    print(f"load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    soak: list[tuple[str, Run]] = []

    bundle = build_bundle(RSASigner("k"))  # the same policies and data, for the in-process run
    rows: list[tuple[str, list[float]]] = []
    stand_in, server_url, public_pem = start_stand_in()
    if args.in_process:
        try:
            with tempfile.TemporaryDirectory() as workdir:
                in_process(args.in_process, server_url, public_pem, workdir, args.distinct)
        finally:
            stand_in.terminate()
            stand_in.wait(30)
        return 0
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
                run = open_loop(port, process.pid, rate, seconds, args.clients, every, live=bool(kind),
                                generator=args.generator, distinct=args.distinct)
                stand_in_cpu = (cpu_seconds(stand_in.pid) - stand_in_cpu) / seconds
                name = (f"sidecar, {kind}logs {args.decision_logs}, {'distinct, ' if args.distinct else ''}"
                        f"{rate:.0f}/s (got {run.achieved:.0f}/s)")
                print(f"{name}: sidecar CPU {(run.cpu[0] + run.cpu[1]) * 1e6:.0f} µs per request (serving process "
                      f"{run.cpu[0] * 1e6:.0f}, decision-log process {run.cpu[1] * 1e6:.0f}); load generator "
                      f"{run.generator_cpu * 1e6:.0f} µs per request; the stand-in control plane (receiving the "
                      f"logs) used {stand_in_cpu:.0%} of a core; decision-log events dropped by the sidecar: "
                      f"{'not reported' if run.dropped is None else f'{run.dropped:.0f}'}", flush=True)
                rows.append((name, run.latencies))
                soak.append((name, run))
                print(f"{name}: {len(run.latencies)} requests, {run.errors} errors, sidecar RSS MiB every {every:g} s: "
                      + " ".join(f"{kib / 1024:.0f}" for kib in run.rss), flush=True)
            connection.close()
            connection = connect()  # the warm-up's connection sat idle past the keep-alive timeout
            closed = []
            for index in range(args.decisions):
                began = time.perf_counter()
                ask(index)
                closed.append(time.perf_counter() - began)
            rows.append(("sidecar, closed loop (back to back)", closed))
            sent = 2000 + sum(len(values) for _, values in rows)
            final_counters = sidecar_counters(port)
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
    print(f"\n{'path (latency from when due)':<48} {'p50 µs':>9} {'p99 µs':>9} {'p99.9 µs':>9} {'p50 vs embedded':>16}")
    for name, values in rows:
        p50, p99, p999 = (percentile(values, f) * 1e6 for f in (0.5, 0.99, 0.999))
        print(f"{name:<48} {p50:>9.0f} {p99:>9.0f} {p999:>9.0f} {percentile(values, 0.5) / base:>15.1f}x")
    print("target (DESIGN.md): sidecar p99 <= 1,000 µs at 1,000 decisions/s, <= 2,000 µs at 5,000/s (decision logs on)")
    print(f"\n{'open-loop run: service time, generator lag':<48} {'p50 µs':>9} {'p99 µs':>9} {'p99.9 µs':>9} {'max µs':>9}")
    for name, run in soak:
        print(lag_row(f"{name[:36]}: service", run.service))
        print(lag_row(f"{name[:36]}: generator lag", run.lags))
    print("(service: from when the request was sent; generator lag: how late the load process sent a request it was "
          "free to send, its own doing, included in the latency from when due)")
    print(f"load average at end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    if logs_on:
        print(f"decision logs: {sent} decisions, {counted.get('received')} events received by the control plane; "
              f"last status counters {counted.get('status')}; the sidecar's /metrics before it stopped: "
              f"{final_counters if final_counters is not None else 'not served'}")
    print(f"\n{'open-loop run':<48} {'requests':>9} {'errors':>7} {'dropped':>8}   sidecar RSS MiB, every "
          f"{args.rss_every:g} s" + (f" (soak: every {args.soak_every:g} s)" if args.soak_seconds else ""))
    for name, run in soak:
        shown = " ".join(f"{kib / 1024:.0f}" for kib in run.rss)
        dropped = "-" if run.dropped is None else f"{run.dropped:.0f}"
        print(f"{name:<48} {len(run.latencies):>9} {run.errors:>7} {dropped:>8}   {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
