"""How long a decision waits on the sidecar's decision-log uploads, in one process.

    python bench/decision_log_stall.py [--rate 1000] [--seconds 10] [--sdk DIR] [--process]

The sidecar decides on one thread while ``DecisionLogShipper`` uploads from another; with
the GIL, any Python work the upload thread does (encoding a second's events) is time the
deciding thread waits. This bench isolates that: a "deciding" loop at ``--rate`` per second
builds each decision's log event as the sidecar does and hands it to the shipper, while
the shipper's thread flushes every second to a local HTTP sink (its own process). It
prints the deciding step's latency (p50/p99/p99.9/max, from when the step was due) and
the upload figures. ``--sdk DIR`` times another copy of the SDK (e.g. the code before a
change, `git archive HEAD agents_sdk | tar -x -C /tmp/before`). ``--process`` uploads as
`warden sidecar` does, from a child process fed through a pipe (``DecisionLogProcess``).
Besides the wall-clock figures (noisy on a shared machine) it prints the CPU time of the
thread that uploads (thread mode; it holds the GIL but while zlib compresses) or writes
the pipe (process mode; it holds the GIL only to join a tick's events), per event.
Never asserts a time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

SINK = """
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
server.serve_forever()
"""

INPUT = {
    "agent": {"id": "support-bot", "name": "support-bot", "owner": "alice@example.com", "scopes": ["read:tickets"]},
    "action": {"type": "tool_call", "tool": "ticket_read", "args": {"id": 1, "note": "x" * 200}},
    "context": {"session_id": "s", "environment": "prod", "time": "2026-01-01T00:00:00Z"},
}
RESULT = {"allow": True, "effect": "allow", "reasons": [], "obligations": {"log": True, "mask": []}}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def thread_cpu(native_id: int) -> float:
    """User + system CPU seconds of one thread of this process."""
    with open(f"/proc/self/task/{native_id}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sdk", default=str(Path(__file__).resolve().parents[1]), help="the directory holding agents_sdk")
    parser.add_argument("--process", action="store_true", help="upload from a child process, as `warden sidecar` does")
    args = parser.parse_args()
    sys.path.insert(0, args.sdk)
    from agents_sdk.sidecar.config import DecisionLogConfig, Service
    from agents_sdk.sidecar.uploads import DecisionLogShipper, rfc3339

    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    try:
        port = int(sink.stdout.readline())  # type: ignore[union-attr]
        service, config = Service("cp", f"http://127.0.0.1:{port}"), DecisionLogConfig("cp")
        stop = threading.Event()
        upload_cpu = [0.0]  # CPU seconds the uploads took in this process
        if args.process:
            from agents_sdk.sidecar.logproc import DecisionLogProcess

            shipper = DecisionLogProcess(service, config)
            shipper.start()
        else:
            shipper = DecisionLogShipper(service, config)

            def uploads() -> None:
                while not stop.wait(1.0):
                    shipper.flush()
                upload_cpu[0] = time.thread_time()

            uploader = threading.Thread(target=uploads, daemon=True)
            uploader.start()
        steps: list[float] = []
        total = int(args.rate * args.seconds)
        start = time.perf_counter()
        for index in range(total):
            due = start + index / args.rate
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            # The sidecar's _log_decision: the event of one decision, then log().
            shipper.log({"labels": {"id": "bench", "app": "bench", "version": "bench"}, "decision_id": str(uuid.uuid4()),
                         "path": "warden/decision", "requested_by": "127.0.0.1:1", "timestamp": rfc3339(),
                         "metrics": {"timer_rego_query_eval_ns": 30000}, "bundles": {"prod": {"revision": "r"}},
                         "input": INPUT, "result": RESULT})
            steps.append(time.perf_counter() - due)
        if args.process:
            writer = shipper._writer
            assert writer is not None and writer.native_id is not None
            upload_cpu[0] = thread_cpu(writer.native_id)
            shipper.flush()
            shipper.stop()
        else:
            stop.set()
            uploader.join()
            shipper.flush()
    finally:
        sink.terminate()
        sink.wait(10)
    print(f"sdk: {args.sdk}; {total} decisions at {args.rate:.0f}/s, uploads every 1 s to a local sink")
    print(f"{'deciding step, from when due':<32} {'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9} {'max µs':>9}")
    p50, p99, p999, worst = (percentile(steps, f) * 1e6 for f in (0.5, 0.99, 0.999, 1.0))
    print(f"{'log() on the deciding thread':<32} {p50:8.0f} {p99:8.0f} {p999:9.0f} {worst:9.0f}")
    print(f"uploaded {shipper.uploaded}, dropped {shipper.dropped}, pending {shipper.pending}; "
          f"upload CPU in this process: {upload_cpu[0] / total * 1e6:.1f} µs per event "
          f"({'the pipe writer thread' if args.process else 'the upload thread'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
