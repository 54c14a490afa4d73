"""In-process decision latency of data.warden.decision for the default policy pack.

Each engine is measured through Warden's engine interface (CompiledPolicy.evaluate)
in the same run, on the same inputs and data; the table gives p50/p99/mean in
microseconds per decision and each engine's ratio to the fastest. Before timing, the
engines' decisions on every sample input are compared, since a fast wrong answer is
no answer. Target (shared/DESIGN.md): p99 <= 50 us. Prints figures; asserts nothing.

regorus is timed twice: as deployed, with its decision cache (agents_sdk.engine.decision_cache:
the samples repeat, so after the first round every decision is a hit), and with the cache off
(WARDEN_DECISION_CACHE=0: every decision evaluated on the compiled VM), the cost of an input
seen for the first time.

    python bench/decision_engine.py [--decisions 20000] [--warmup 2000] [--baseline-pack DIR]

--baseline-pack DIR also times regorus on another copy of the pack (e.g. the pack before a
change, `git archive HEAD rego | tar -x -C /tmp/before`), in the same run and on the same
inputs, so hardening the pack is never paid for with a slower hot path without a figure.

--instructions N, under callgrind, runs N uncached decisions of each sample (on --baseline-pack
if given, else on rego/) between two marker calls, math.gcd (callgrind zeroes its counters on
entering it) and math.lgamma (callgrind writes a dump on entering it), then reads the dumps and
prints instructions per decision for each sample, for counts that the machine's load cannot blur
(docs/rego-engine.md). The markers are plain calls in this process, so no dump is lost or taken
late (callgrind_control, used before, passed sample names through a shell: "(prod delete)" was a
syntax error there and that sample's dump never came):

    valgrind --tool=callgrind --zero-before=math_gcd --dump-before=math_lgamma \
        --callgrind-out-file=/tmp/cg.%p python bench/decision_engine.py --instructions 100

--rules a,b,c with --instructions also counts each named rule of package warden alone
(its inclusive cost on the compiled VM, `Rvm.execute_entry_point`), per sample.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents_sdk.engine import BACKENDS, RegoEngine, RegoEngineError, load_modules  # noqa: E402

REGISTRY = {
    "warden_registry": {
        "agents": {
            "support-bot": {
                "status": "active",
                "scopes": ["read:tickets", "write:files", "net:http", "shell:exec", "payments:create"],
                "egress": {"allow_hosts": ["*.example.com"]},
                "shell": {"allow_commands": ["ls", "git status"]},
            },
            "suspended-bot": {"status": "suspended", "scopes": ["read:tickets"]},
        },
        "tools": {
            "ticket_read": {"scopes": ["read:tickets"]},
            "file_delete": {"scopes": ["write:files"]},
            "http_request": {"scopes": ["net:http"], "category": "network"},
            "shell": {"scopes": ["shell:exec"], "category": "shell"},
            "payment_create": {"scopes": ["payments:create"], "category": "payment"},
        },
        "protected_paths": ["/prod/"],
        "rate_limits": {"calls_per_minute": 120},
    }
}


def request(agent, tool, args, **context):
    return {
        "agent": {"id": agent, "name": agent, "owner": "alice@example.com", "scopes": ["read:tickets", "write:files", "net:http", "shell:exec", "payments:create"]},
        "action": {"type": "tool_call", "tool": tool, "args": args},
        "context": {"session_id": "s-1", "environment": "prod", "time": "2026-01-01T00:00:00Z", **context},
    }


SAMPLES = {
    "design example (prod delete)": request("support-bot", "file_delete", {"path": "/prod/x"}),
    "allowed ticket read": request("support-bot", "ticket_read", {"id": 7}, counters={"agent": {"calls_per_minute": 3}}),
    "egress denied": request("support-bot", "http_request", {"url": "https://attacker.net/x"}),
    "shell allowed": request("support-bot", "shell", {"command": "ls -la"}),
    "card masked, payment approval": request("support-bot", "payment_create", {"amount": 5, "card": "4111 1111 1111 1111"}),
    "suspended agent": request("suspended-bot", "ticket_read", {"id": 7}),
}


def percentile(sorted_values, fraction):
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def evaluate_or_error(policy, item):
    try:
        policy.evaluate("data.warden.decision", item)
        return 0
    except RegoEngineError:
        return 1


def measure(policy, inputs, decisions, warmup):
    for i in range(warmup):
        evaluate_or_error(policy, inputs[i % len(inputs)])
    timings = []
    errors = 0
    clock = time.perf_counter_ns
    for i in range(decisions):
        item = inputs[i % len(inputs)]
        started = clock()
        errors += evaluate_or_error(policy, item)
        timings.append(clock() - started)
    timings.sort()
    return {
        "errors": errors,
        "p50": percentile(timings, 0.50) / 1000,
        "p99": percentile(timings, 0.99) / 1000,
        "mean": statistics.fmean(timings) / 1000,
    }


def uncached(engine, modules):
    """The policy with regorus' decision cache off: its session is made while compiling."""
    previous = os.environ.get("WARDEN_DECISION_CACHE")
    os.environ["WARDEN_DECISION_CACHE"] = "0"
    try:
        return engine.compile(modules, REGISTRY)
    finally:
        if previous is None:
            del os.environ["WARDEN_DECISION_CACHE"]
        else:
            os.environ["WARDEN_DECISION_CACHE"] = previous


# Callgrind markers (--zero-before=math_gcd --dump-before=math_lgamma): nothing on the
# measured path calls either function.
def zero_counters() -> None:
    math.gcd(1, 1)


def dump_counters() -> None:
    math.lgamma(1.0)


def dump_totals(prefix: str, count: int) -> list[int] | None:
    """Instructions in callgrind's numbered dumps prefix.1 .. prefix.count, or None if one is missing."""
    totals = []
    for number in range(1, count + 1):
        path = Path(f"{prefix}.{number}")
        if not path.exists():
            return None
        lines = [line for line in path.read_text().splitlines() if line.startswith(("summary:", "totals:"))]
        if not lines:
            return None
        totals.append(int(lines[0].split()[1]))
    return totals


def instructions(pack: str, decisions: int, out_file: str, rules: list[str]) -> int:
    """Count instructions per uncached decision of each sample (and per rule, with --rules)."""
    from agents_sdk.engine import regorus_backend
    from agents_sdk.engine.decision_cache import encode_input
    from agents_sdk.engine.verified_library import digest, verified_digests

    modules = {k: v for k, v in load_modules(pack).items() if not k.endswith("_test.rego")}
    trusted = verified_digests() | {digest(source) for source in modules.values()}
    regorus_backend.verified_digests = lambda: trusted  # as for --baseline-pack
    policy = uncached(RegoEngine("regorus"), modules)
    measured: list[tuple[str, str]] = []  # (sample, what), in dump order
    for sample, item in SAMPLES.items():
        for _ in range(5):
            policy.evaluate("data.warden.decision", item)
        zero_counters()
        for _ in range(decisions):
            policy.evaluate("data.warden.decision", item)
        dump_counters()
        measured.append((sample, "CompiledPolicy.evaluate"))
    if rules:
        run = regorus_backend.entry_point_runner(modules, REGISTRY, [f"data.warden.{rule}" for rule in rules])
        for sample, item in SAMPLES.items():
            text = encode_input(item)
            for rule in rules:
                for _ in range(3):
                    run(f"data.warden.{rule}", text)
                zero_counters()
                for _ in range(decisions):
                    run(f"data.warden.{rule}", text)
                dump_counters()
                measured.append((sample, rule))
    prefix = out_file.replace("%p", str(os.getpid()))
    totals = dump_totals(prefix, len(measured))
    if totals is None:
        print(f"no callgrind dumps at {prefix}.N: run under valgrind --tool=callgrind "
              f"--zero-before=math_gcd --dump-before=math_lgamma --callgrind-out-file={out_file}")
        return 1
    table: dict[str, dict[str, float]] = {}
    for (sample, what), total in zip(measured, totals, strict=True):
        table.setdefault(what, {})[sample] = total / decisions
    print(f"pack {pack}: instructions per call, {decisions} calls of each sample (decision: "
          f"CompiledPolicy.evaluate, cache off; a rule: Rvm.execute_entry_point alone)")
    short = [sample.split(" (")[0][:16] for sample in SAMPLES]
    print(f"{'':36}" + "".join(f"{name:>17}" for name in short) + f"{'mean':>10}")
    for what, per_sample in table.items():
        values = [per_sample[sample] for sample in SAMPLES]
        print(f"{what:36}" + "".join(f"{value / 1e6:16.3f}M" for value in values) + f"{statistics.fmean(values) / 1e6:9.3f}M")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--baseline-pack", help="a directory holding another copy of rego/warden to time as well")
    parser.add_argument("--instructions", type=int, default=0, help="under callgrind: N decisions per sample between dumps")
    parser.add_argument("--callgrind-out", default="/tmp/cg.%p", help="valgrind's --callgrind-out-file, to read the dumps")
    parser.add_argument("--rules", default="", help="with --instructions: rules of package warden to count alone, comma-separated")
    parser.add_argument("--engines", default=",".join(BACKENDS), help="comma-separated backends to time (default: all)")
    options = parser.parse_args()
    if options.instructions:
        rules = [rule for rule in options.rules.split(",") if rule]
        return instructions(options.baseline_pack or str(ROOT / "rego"), options.instructions, options.callgrind_out, rules)

    modules = {k: v for k, v in load_modules(ROOT / "rego", relative_to=ROOT).items() if not k.endswith("_test.rego")}
    inputs = list(SAMPLES.values())

    policies, skipped = {}, {}
    for name in options.engines.split(","):
        try:
            engine = RegoEngine(name)
            policies[f"{name} {engine.version}"] = engine.compile(modules, REGISTRY)
            if name == "regorus":
                policies[f"{name} {engine.version} no cache"] = uncached(engine, modules)
        except (ImportError, RegoEngineError) as exc:
            skipped[name] = str(exc)
    if options.baseline_pack:
        baseline = {k: v for k, v in load_modules(options.baseline_pack).items() if not k.endswith("_test.rego")}
        # The baseline ran on the compiled VM before the VM was limited to verified library
        # modules: count its modules as verified so it is timed as it ran then.
        from agents_sdk.engine import regorus_backend
        from agents_sdk.engine.verified_library import digest, verified_digests

        trusted = verified_digests() | {digest(source) for source in baseline.values()}
        regorus_backend.verified_digests = lambda: trusted
        engine = RegoEngine("regorus")
        policies[f"regorus {engine.version} (baseline pack)"] = engine.compile(baseline, REGISTRY)

    print(f"default pack: {len(modules)} modules; {len(inputs)} sample inputs; "
          f"{options.decisions} decisions after {options.warmup} warm-up, one thread\n")

    print("decisions (effect / reasons) per engine:")
    reference = None
    for label, policy in policies.items():
        answers = {}
        for sample, item in SAMPLES.items():
            try:
                answers[sample] = policy.evaluate("data.warden.decision", item)
            except RegoEngineError as exc:
                answers[sample] = f"error: {exc}"
        agree = "reference" if reference is None else ("same as reference" if answers == reference else "DIFFERS from reference")
        reference = reference or answers
        print(f"  {label}: {agree}")
        for sample, answer in answers.items():
            summary = answer if not isinstance(answer, dict) else f"{answer['effect']} {[r['rule'] for r in answer['reasons']]} mask={answer['obligations']['mask']}"
            print(f"    {sample:32} {summary}")
    print()

    results = {label: measure(policy, inputs, options.decisions, options.warmup) for label, policy in policies.items()}
    fastest = min(result["p99"] for result in results.values())
    print(f"{'engine':36} {'p50 us':>9} {'p99 us':>9} {'mean us':>9} {'p99 / fastest':>14} {'errors':>7}")
    for label, result in results.items():
        print(f"{label:36} {result['p50']:9.1f} {result['p99']:9.1f} {result['mean']:9.1f} {result['p99'] / fastest:14.2f} {result['errors']:7}")
    for name, reason in skipped.items():
        print(f"{name:36} skipped: {reason}")
    print("\ntarget: p99 <= 50 us in process (shared/DESIGN.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
