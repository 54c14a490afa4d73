"""Impact preview over recorded traffic: N decision logs (default 100,000) in one environment,
replayed against a policy and a relaxed version of it (an org rule's limit raised).

    DATABASE_URL=postgres://... .venv/bin/python bench/impact_preview.py [--decisions 100000] [--distinct 20000]

Prints how long gathering, deduplicating and replaying took, and what changed. The rows it
writes (one environment, its decision logs, the preview) are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

import django  # noqa: E402

django.setup()

from django.utils import timezone  # noqa: E402

from controlplane.authoring import previews  # noqa: E402
from controlplane.authoring.models import ImpactPreview  # noqa: E402
from controlplane.authoring.templates import module_source  # noqa: E402
from controlplane.bundles.models import Environment  # noqa: E402
from controlplane.identity.models import Agent  # noqa: E402
from controlplane.opa.models import DecisionLog  # noqa: E402
from controlplane.policies.library import library_modules  # noqa: E402
from controlplane.policies.models import Tool  # noqa: E402

TOOLS = ["pay_invoice", "ticket_read", "http_request", "email_send", "file_read"]


def cap(limit: int) -> str:
    return module_source("block_tool", {
        "name": "bench_cap", "owner": "risk@example.com", "tools": ["pay_invoice"], "effect": "deny",
        "when": {"amount_over": {"limit": limit}},
    })


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=20_000, help="distinct inputs among them")
    parser.add_argument("--profile", action="store_true")
    options = parser.parse_args()
    rng = random.Random(7)
    name = f"bench-{uuid.uuid4().hex[:6]}"
    environment = Environment.objects.create(name=name)
    agents = [f"bench-agent-{n}" for n in range(20)]
    for agent in agents:
        Agent.objects.get_or_create(name=agent, defaults={"owner_email": "bench@example.com", "environments": [name], "scopes": ["all"]})
    for tool in TOOLS:
        Tool.objects.get_or_create(name=tool, defaults={"scopes": ["all"]})
    distinct = []
    for n in range(options.distinct):
        tool = TOOLS[n % len(TOOLS)]
        args = {"amount": rng.randint(1, 10_000)} if tool == "pay_invoice" else {"id": n, "url": f"https://h{n % 50}.example.com/"}
        distinct.append({"agent": {"id": agents[n % len(agents)]}, "action": {"type": "tool_call", "tool": tool, "args": args},
                         "context": {"session_id": f"s-{n % 500}", "environment": name}})
    now = timezone.now()
    started = time.perf_counter()
    rows = [
        DecisionLog(decision_id=str(uuid.uuid4()), environment=environment, instance_id="bench", path="warden/decision",
                    input=distinct[rng.randrange(len(distinct))], result={"effect": "allow"}, timestamp=now - timedelta(milliseconds=n), event={})
        for n in range(options.decisions)
    ]
    DecisionLog.objects.bulk_create(rows, batch_size=5000)
    print(f"wrote {options.decisions:,} decision logs in {time.perf_counter() - started:.1f} s")
    library = library_modules(include_tests=False)
    baseline, candidate = library | {"org/bench_cap.rego": cap(1000)}, library | {"org/bench_cap.rego": cap(5000)}
    preview = ImpactPreview.objects.create(
        environment=environment, window_start=now - timedelta(days=1), window_end=now + timedelta(minutes=1),
        baseline_files=baseline, candidate_files=candidate, candidate_digest=previews.files_digest(candidate),
    )
    try:
        started = time.perf_counter()
        if options.profile:
            import cProfile
            import pstats

            with cProfile.Profile() as profile:
                preview = previews.run_impact_preview(preview)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
        else:
            preview = previews.run_impact_preview(preview)
        elapsed = time.perf_counter() - started
        print("| recorded decisions | distinct inputs replayed | total with library inputs | time | decisions/s | relaxations | transitions |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        print(f"| {preview.sources['decision_logs']:,} | {preview.unique_inputs:,} | {preview.total:,} | {elapsed:.1f} s | "
              f"{preview.total / elapsed:,.0f} | {preview.relaxations:,} | {preview.changes['transitions']} |")
        print("note: 2-core machine shared with other work; figures are noisy")
    finally:
        ImpactPreview.objects.filter(environment=environment).delete()
        DecisionLog.objects.filter(environment=environment).delete()
        environment.delete()


if __name__ == "__main__":
    main()
