"""Click-to-run latency of human approval: from an approver's click (the approve API call
the console makes) to the held call running in a real agent process.

    python bench/approvals.py --url http://127.0.0.1:8000 --var-dir var [--count 50]

Needs a running control plane seeded with the demo (`make run`, or `manage.py seed_demo`):
the admin token registers a fresh agent, the approver token approves. The agent process
(tests/approvals/agent_process.py) makes --count held payments one after another, each
waiting (long poll) for its approval; for each, this script approves it as soon as it is
filed and records the time of the click; the agent records when the payment ran (same
host, same clock). Prints p50/p90/p99/max over the approvals. Nothing is asserted: on a
shared 2-core machine the figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def call(url: str, token: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                     method="GET" if body is None else "POST")
    request.add_header("Authorization", f"Token {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--var-dir", required=True, help="the server's WARDEN_VAR_DIR (demo-tokens/)")
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args(argv)
    tokens = Path(args.var_dir) / "demo-tokens"
    approver = (tokens / "approver.token").read_text().strip()
    workdir = Path(tempfile.mkdtemp(prefix="warden-bench-approvals-"))
    load_before = os.getloadavg()[0]
    agent = subprocess.Popen(
        [sys.executable, str(REPO / "tests/approvals/agent_process.py"), "--url", args.url,
         "--admin-token-file", str(tokens / "admin.token"), "--workdir", str(workdir), "--mode", "guard",
         "--count", str(args.count), "--timeout", "120"],
        stdout=subprocess.PIPE, text=True,
    )
    assert agent.stdout is not None
    clicks: dict[int, float] = {}
    ran: dict[int, float] = {}
    name = ""
    try:
        for line in agent.stdout:
            event = json.loads(line)
            if event["event"] == "ready":
                name = event["agent"]
            elif event["event"] == "calling":
                amount = event["amount"]
                request_id = ""
                while not request_id:  # the request is filed right after the decision
                    pending = call(args.url, approver, "/api/v1/approvals/?state=pending&limit=100")
                    request_id = next((r["id"] for r in pending["results"]
                                       if r["agent"] == name and r["masked_args"].get("amount") == amount), "")
                    if not request_id:
                        time.sleep(0.02)
                time.sleep(0.2)  # the agent is held in its long poll by now
                clicks[amount] = time.time()
                call(args.url, approver, f"/api/v1/approvals/{request_id}/approve/", {"comment": "bench"})
            elif event["event"] == "ran":
                ran[event["amount"]] = event["t"]
            elif event["event"] == "refused":
                print(f"refused: {event['error']}", file=sys.stderr)
            elif event["event"] == "done":
                break
    finally:
        agent.wait(timeout=60)
    latencies = [(ran[a] - clicks[a]) * 1000 for a in sorted(ran) if a in clicks]
    if not latencies:
        print("no approval completed", file=sys.stderr)
        return 1
    print(f"click-to-run latency over {len(latencies)} approvals (ms; approve API call → held call running); "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"{'p50':>8} {'p90':>8} {'p99':>8} {'max':>8} {'mean':>8}")
    print(f"{percentile(latencies, .5):8.0f} {percentile(latencies, .9):8.0f} {percentile(latencies, .99):8.0f} "
          f"{max(latencies):8.0f} {statistics.mean(latencies):8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
