"""Reads: what log-only rules would have done to live traffic, from the decision logs.

Engines put the would-be decision of log-only modules under `log_only` in the decision
document (rego/warden/decision.rego), so OPA's and the Warden sidecar's decision logs
carry it without any engine change.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from controlplane.bundles.models import Environment
from controlplane.opa.models import DecisionLog

SAMPLES_PER_RULE = 5


def log_only_effects(environment: Environment, *, since: datetime, limit: int = 100_000) -> dict:
    """Per log-only rule: decisions it would have changed, how (allow->deny, ...), by agent
    and tool, with samples; plus how many logged decisions were looked at."""
    rows = (
        DecisionLog.objects.filter(environment=environment, timestamp__gte=since, result__has_key="log_only")
        .values_list("id", "decision_id", "timestamp", "input", "result").order_by("-timestamp")[:limit]
    )
    rules: dict[str, dict] = {}
    looked_at = 0
    for pk, decision_id, moment, value, result in rows.iterator(chunk_size=2000):
        looked_at += 1
        shadow = result.get("log_only") if isinstance(result, dict) else None
        if not isinstance(shadow, dict) or not isinstance(shadow.get("reasons"), list):
            continue
        enforced, would_be = result.get("effect"), shadow.get("effect")
        for reason in shadow["reasons"]:
            if not isinstance(reason, dict) or not isinstance(reason.get("rule"), str):
                continue
            entry = rules.setdefault(reason["rule"], {
                "rule": reason["rule"], "message": reason.get("message", ""), "matched": 0, "would_change": 0,
                "transitions": Counter(), "by_agent": Counter(), "by_tool": Counter(), "samples": [],
            })
            entry["matched"] += 1
            if enforced != would_be:
                entry["would_change"] += 1
                entry["transitions"][f"{enforced}->{would_be}"] += 1
            action = value.get("action") if isinstance(value, dict) else None
            agent = value.get("agent") if isinstance(value, dict) else None
            entry["by_agent"][str(agent.get("id")) if isinstance(agent, dict) else "(none)"] += 1
            entry["by_tool"][str(action.get("tool")) if isinstance(action, dict) else "(none)"] += 1
            if len(entry["samples"]) < SAMPLES_PER_RULE:
                entry["samples"].append({
                    "decision_log": pk, "decision_id": decision_id, "timestamp": moment.isoformat(), "input": value,
                    "effect": enforced, "would_be": would_be,
                })
    for entry in rules.values():
        for key in ("transitions", "by_agent", "by_tool"):
            entry[key] = dict(entry[key].most_common(20))
    return {"environment": environment.name, "since": since.isoformat(), "decisions": looked_at, "rules": sorted(rules.values(), key=lambda e: e["rule"])}
