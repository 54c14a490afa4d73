"""A governed tool call, Warden beside Microsoft's Agent Governance Toolkit, in one run.

    flock /work/coord/nox.lock .venv/bin/nox --reuse-existing-virtualenvs -s bench-governed-call
    python bench/governed_call.py [--calls 20000] [--rounds 3] [--warmup 2000] [--profile check|tool]

The nox session installs ``agent-governance-toolkit[full]==4.1.0`` in its own environment.
Three cases (a /prod/ delete, a /tmp delete, a /prod/ read), cycled call by call; the
paths take turns in each round (AGT, decide, check, tool, then the next round), so load
from other processes hits every path alike. Rows:

- AGT ``govern()``: its default configuration (audit on), one YAML rule denying deletes
  under /prod/, default allow;
- Warden ``EmbeddedBackend.decide``: the decision alone, full shipped pack;
- Warden ``Guard.check``: decision + signed, chained intent and decision records;
- Warden ``@guard.tool``: decision + intent, decision and result records.

Warden's records are spooled by the call and signed by a separate signer process (``ActionSigner(spool_dir=...)``,
docs/signed-records.md); ``--signing sync`` signs them in the call instead. Calls run back to back, so after
``max_pending`` records the signer's rate (three Ed25519 signatures per call, one core) paces the calls;
``--burst 30`` pauses (untimed) after every 30 calls until signing caught up, as an agent chaining tools
waits for its model. With background signing callgrind does not trace the signer process (no
``--trace-children``); ``--separate-threads=yes`` counts the calling thread apart from the thread that
follows the signer's reports: the calling thread's count is the hot path.

Prints p50/p99 per path and its ratio to AGT (the target, DESIGN.md: the governed call's
p50 at most half of AGT's and its p99 below AGT's). Without AGT installed it prints the
Warden rows only. ``--profile`` prints a cProfile of one path instead. ``--only PATH`` just runs one path
``--calls`` times, for an instruction count that load on the machine cannot blur:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/governed_call.py --only tool --calls 400

(run it with two ``--calls`` values; the difference over the difference in calls is the
cost of one call, setup excluded). Never asserts a time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents_sdk.errors import ApprovalRequired, PolicyViolationError  # noqa: E402
from agents_sdk.integrations.tests.policy import governed  # noqa: E402
from agents_sdk.records import ActionSigner  # noqa: E402

CASES = [("file_delete", "/prod/x"), ("file_delete", "/tmp/x"), ("file_read", "/prod/x")]

AGT_POLICY = """
name: no-prod-deletes
version: "1.0"
default_action: allow
rules:
  - name: no-prod-deletes
    condition: "action.type == 'file_delete' and path.value == '/prod/x'"
    action: deny
    description: Production file deletion requires human approval
"""


def warden_paths(signing: str = "background", spool_dir: str | None = None) -> dict[str, Callable[[int], Any]]:
    guard = governed("support-bot")
    assert guard.signer is not None
    if signing == "background":
        # The hot path spools each record (one os.write per call stage); a signer process signs it.
        guard.signer = ActionSigner(guard.identity, keep_log=False, spool_dir=spool_dir)
    else:
        guard.signer._keep_log = False  # a long run would otherwise keep every record in memory
    inputs = [guard.build_input(tool, {"path": path}) for tool, path in CASES]

    def file_delete(path: str) -> str:
        return f"deleted {path}"

    def file_read(path: str) -> str:
        return f"contents of {path}"

    tools = {"file_delete": guard.tool(file_delete), "file_read": guard.tool(file_read)}

    def decide(i: int) -> Any:
        return guard.backend.decide(inputs[i % 3])

    def check(i: int) -> Any:
        tool, path = CASES[i % 3]
        return guard.check(tool, {"path": path})

    def tool_call(i: int) -> Any:
        tool, path = CASES[i % 3]
        try:
            return tools[tool](path)
        except (ApprovalRequired, PolicyViolationError) as exc:
            return exc

    return {
        "Warden EmbeddedBackend.decide": decide,
        "Warden Guard.check": check,
        "Warden @guard.tool": tool_call,
        "flush": guard.signer.flush,
        "close": guard.signer.close,
    }


def agt_path() -> tuple[str, Callable[[int], Any]] | None:
    try:
        from agentmesh.governance.govern import GovernanceDenied, govern
    except ImportError:
        return None
    from importlib.metadata import version

    def file_op(action: dict[str, str], path: str) -> str:
        return f"{action['type']} {path}"

    governed_op = govern(file_op, policy=AGT_POLICY, agent_id="support-bot")  # audit on: the default
    actions = [{"type": tool} for tool, _ in CASES]

    def call(i: int) -> Any:
        try:
            return governed_op(action=actions[i % 3], path=CASES[i % 3][1])
        except GovernanceDenied as exc:
            return exc

    # The rule must fire on the /prod/ delete only, as Warden's does.
    outcomes = [isinstance(call(i), GovernanceDenied) for i in range(3)]
    if outcomes != [True, False, False]:
        raise SystemExit(f"AGT policy does not decide the cases as intended: {outcomes}")
    return f"AGT {version('agent-governance-toolkit')} govern()", call


class Pacing:
    """--burst: calls between pauses in which background signing catches up (0: none)."""

    burst = 0
    pause: Callable[[], Any] | None = None


def timed(call: Callable[[int], Any], calls: int) -> list[int]:
    clock = time.perf_counter_ns
    timings = [0] * calls
    for i in range(calls):
        if Pacing.burst and i % Pacing.burst == 0 and Pacing.pause is not None:
            Pacing.pause()  # untimed: the agent's think time between chains of tool calls
        started = clock()
        call(i)
        timings[i] = clock() - started
    return timings


def percentile(ordered: list[int], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))] / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per path per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--profile", choices=["check", "tool"], help="print a cProfile of one path instead")
    parser.add_argument(
        "--only", choices=["agt", "decide", "check", "tool"], help="run one path --calls times, print nothing"
    )
    parser.add_argument(
        "--signing",
        choices=["background", "sync"],
        default="background",
        help="Warden's records: spooled and signed by a signer process (default), or signed in the call",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=0,
        metavar="N",
        help="after every N calls, wait (untimed) until background signing caught up, as an agent "
        "waits for its model between chains of tool calls; 0 (default): calls back to back",
    )
    options = parser.parse_args()
    Pacing.burst = options.burst

    if options.only == "agt":
        peer = agt_path()
        if peer is None:
            raise SystemExit("AGT is not installed here")
        timed(peer[1], 30)
        timed(peer[1], options.calls)
        return 0
    spool = tempfile.TemporaryDirectory(prefix="warden-bench-spool-")
    paths = warden_paths(options.signing, spool.name)
    Pacing.pause = paths.pop("flush")
    close = paths.pop("close")
    try:
        if options.only or options.profile:
            profile_or_count(paths, options)
            return 0
        run_side_by_side(paths, options)
    finally:
        close()  # waits for the records still being signed
        spool.cleanup()
    return 0


def profile_or_count(paths: dict[str, Callable[[int], Any]], options: argparse.Namespace) -> None:
    if options.only:
        call = paths[
            {"decide": "Warden EmbeddedBackend.decide", "check": "Warden Guard.check", "tool": "Warden @guard.tool"}[
                options.only
            ]
        ]
        timed(call, 30)  # first-call costs (the VM's compile) out of the difference
        timed(call, options.calls)
        return
    call = paths["Warden Guard.check" if options.profile == "check" else "Warden @guard.tool"]
    timed(call, options.warmup)
    profiler = cProfile.Profile()
    profiler.enable()
    timed(call, options.calls)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def run_side_by_side(paths: dict[str, Callable[[int], Any]], options: argparse.Namespace) -> None:
    peer = agt_path()
    if peer is not None:
        paths = {peer[0]: peer[1], **paths}
    for call in paths.values():
        timed(call, options.warmup)
    rounds: dict[str, list[tuple[float, float]]] = {label: [] for label in paths}
    merged: dict[str, list[int]] = {label: [] for label in paths}
    for _ in range(options.rounds):
        for label, call in paths.items():
            timings = sorted(timed(call, options.calls))
            rounds[label].append((percentile(timings, 0.5), percentile(timings, 0.99)))
            merged[label].extend(timings)

    print(
        f"{options.rounds} interleaved rounds x {options.calls} calls per path after {options.warmup} warm-up; "
        f"cases cycled: {', '.join(f'{t} {p}' for t, p in CASES)}; records signed: {options.signing}"
        f"{f', pause every {options.burst} calls' if options.burst else ', calls back to back'}\n"
    )
    print(f"{'path':34} {'p50 µs':>8} {'p99 µs':>8} {'p50/AGT':>8} {'p99/AGT':>8}   per round p50 / p99")
    reference = None
    for label, timings in merged.items():
        timings.sort()
        p50, p99 = percentile(timings, 0.5), percentile(timings, 0.99)
        if peer is not None and label == peer[0]:
            reference = (p50, p99)
        ratio = f"{p50 / reference[0]:8.2f} {p99 / reference[1]:8.2f}" if reference else f"{'-':>8} {'-':>8}"
        per_round = "  ".join(f"{a:.0f}/{b:.0f}" for a, b in rounds[label])
        print(f"{label:34} {p50:8.1f} {p99:8.1f} {ratio}   {per_round}")
    if reference is None:
        print("\n(AGT not installed here: run the nox session bench-governed-call for the side-by-side)")
    print("\ntarget: @guard.tool p50 <= 0.5 x AGT p50 and p99 < AGT p99 (DESIGN.md); noisy on a shared machine")


if __name__ == "__main__":
    sys.exit(main())
