"""Kill-switch drills measured from the engines' own decision logs: for each suspension of
an environment's agent, the time from the suspension (change log) to the first decision an
engine of that environment uploaded denying the agent, and any decision that still allowed
it in between (the bundle had not reached that engine yet). A probe shows the bundle denies a
suspended agent; only this shows how fast the running engines did."""

from __future__ import annotations

import statistics
from datetime import timedelta

from django.db.models import Q

from controlplane.opa.models import DecisionLog

# Decisions this long after a suspension still belong to the drill; a later first decision
# measures the agent's traffic, not the switch.
DRILL_WINDOW = timedelta(minutes=15)
MAX_DRILLS = 50


def _allowed(result) -> bool:
    return isinstance(result, dict) and result.get("allow") is True


def time_to_deny(environment, suspensions, agents_by_pk: dict, period_end) -> dict:
    """{"drills": [...], "measured": n, "median_s", "max_s", "allowed_after_suspension": [...]}."""
    drills = []
    for change in suspensions[:MAX_DRILLS]:
        agent = agents_by_pk.get(change.object_id)
        if agent is None:
            continue
        end = min(change.time + DRILL_WINDOW, period_end)
        decisions = list(
            DecisionLog.objects.filter(Q(input__agent__name=agent.name) | Q(input__agent__id=agent.name),
                                       environment=environment, timestamp__gte=change.time, timestamp__lt=end)
            .order_by("timestamp").values("decision_id", "timestamp", "result")[:200]
        )
        first_deny = next((d for d in decisions if not _allowed(d["result"])), None)
        allowed = [d for d in decisions if _allowed(d["result"])
                   and (first_deny is None or d["timestamp"] < first_deny["timestamp"])]
        drills.append({
            "agent": agent.name, "suspended_at": change.time.isoformat(), "by": change.user_name,
            "time_to_deny_s": round((first_deny["timestamp"] - change.time).total_seconds(), 3) if first_deny else None,
            "first_deny_decision": first_deny["decision_id"] if first_deny else None,
            "allowed_after": [{"decision_id": d["decision_id"],
                               "after_s": round((d["timestamp"] - change.time).total_seconds(), 3)} for d in allowed[:5]],
        })
    times = [d["time_to_deny_s"] for d in drills if d["time_to_deny_s"] is not None]
    return {
        "drills": drills, "measured": len(times),
        "median_s": round(statistics.median(times), 3) if times else None,
        "max_s": max(times) if times else None,
        "allowed_after_suspension": [f"{d['agent']} was allowed {a['after_s']} s after its suspension at "
                                     f"{d['suspended_at'][:19]} (decision {a['decision_id']})"
                                     for d in drills for a in d["allowed_after"]],
    }
