"""Start-up overhead of the sandbox per call: what isolating a tool run costs over running it bare.

    python bench/sandbox.py [--calls 200]

Each row runs a trivial command many times, one after the other, and prints p50 and p99
wall time per call, and the overhead of each p50 over the bare run of the same command:

- bare: ``subprocess.run`` of the command, no isolation;
- bwrap minimal: bubblewrap with only namespaces and /usr bound (the floor of any bwrap sandbox);
- Sandbox.run: Warden's full sandbox (namespaces, profile mounts, seccomp, prlimit, output pump);
- Sandbox.run + egress proxy: the same with an allowlisted host, so the proxy starts and stops;
- governed: SandboxedAgent.python with the shipped policy pack and a signer (decision, intent,
  decision and result records signed).

Prints figures, never asserts a time. Run it on an idle machine: two shared cores make p99 noisy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents_sdk.guard import EmbeddedBackend, Guard
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from agents_sdk.sandbox import Permissions, Sandbox
from agents_sdk.sandbox.governed import SandboxedAgent
from agents_sdk.sandbox.runner import _privilege_drop, _system_links
from agents_sdk.tests.signed_bundles import library_modules, registry

TRUE = ["/usr/bin/true"]
# The system interpreter by its path: the same binary bare and inside (on PATH there may be a shim).
PYTHON = ["/usr/bin/python3", "-I", "-c", "pass"]


def timed(call, calls: int) -> list[float]:
    for _ in range(5):
        call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def p(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1] if len(samples) > 1 else samples[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    calls = parser.parse_args().calls

    plain = Sandbox(Permissions(shell_commands=["/usr/bin/true", "/usr/bin/python3"]))
    networked = Sandbox(Permissions(shell_commands=["/usr/bin/true"], network_access=["pypi.org"]))
    bwrap = shutil.which("bwrap")
    minimal = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr", *_system_links(), "--"]
    data = registry()
    data["warden_registry"]["agents"]["coder-bot"] = {
        "status": "active", "owner": "a@example.com", "scopes": ["exec:code"],
        "shell": {"allow_commands": ["python3"]}, "sandbox": {"file_read": [], "file_write": []},
    }
    data["warden_registry"]["tools"]["run_python"] = {"scopes": ["exec:code"]}
    identity = AgentIdentity.create("coder-bot", "a@example.com", ["exec:code"])
    guard = Guard(identity, EmbeddedBackend.from_modules(library_modules(), data), environment="prod",
                  session_id="bench", signer=ActionSigner(identity))
    agent = SandboxedAgent(guard)

    def bare(argv):
        return lambda: subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)

    rows = [
        ("true", "bare", bare(TRUE)),
        ("true", "bwrap minimal", lambda: subprocess.run([*minimal, *TRUE], check=True, **_privilege_drop())),
        ("true", "Sandbox.run", lambda: plain.run(TRUE)),
        ("true", "Sandbox.run + egress proxy", lambda: networked.run(TRUE)),
        ("python3 -c pass", "bare", bare(PYTHON)),
        ("python3 -c pass", "Sandbox.run", lambda: plain.run(PYTHON)),
        ("python3 -c pass", "governed (policy + 3 signed records)", lambda: agent.python("pass")),
    ]
    print(f"sandbox start-up per call, {calls} sequential calls each, {os.cpu_count()} CPUs")
    print(f"{'command':<17}{'how':<40}{'p50 ms':>9}{'p99 ms':>9}{'p50 overhead ms':>17}")
    baseline: dict[str, float] = {}
    for command, how, call in rows:
        samples = timed(call, calls)
        p50, p99 = statistics.median(samples), p(samples, 99)
        baseline.setdefault(command, p50)
        print(f"{command:<17}{how:<40}{p50:>9.2f}{p99:>9.2f}{p50 - baseline[command]:>17.2f}")


if __name__ == "__main__":
    main()
