"""Reads of detection that are more than a filter."""

from __future__ import annotations

from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone

from controlplane.detection.models import (
    OPEN_STATES,
    AgentBaseline,
    Alert,
    AlertState,
    Incident,
    ResponseAction,
    Severity,
)


def alerts() -> QuerySet[Alert]:
    return Alert.objects.select_related("agent", "acknowledged_by", "closed_by").prefetch_related(
        "deliveries", "incidents"
    )


def incidents() -> QuerySet[Incident]:
    return Incident.objects.select_related("owner").prefetch_related("agents", "alerts", "clocks", "timeline__agent")


def baselines() -> QuerySet[AgentBaseline]:
    return AgentBaseline.objects.select_related("agent")


def inbox() -> dict:
    """Counts for the console's alert inbox (polled; `latest_id` tells the console to refetch)."""
    open_states = [AlertState.OPEN, AlertState.ACKNOWLEDGED]
    counts = Alert.objects.filter(state__in=open_states).aggregate(
        open=Count("id", filter=Q(state=AlertState.OPEN)),
        acknowledged=Count("id", filter=Q(state=AlertState.ACKNOWLEDGED)),
        latest_id=Max("id"),
        **{s: Count("id", filter=Q(severity=s)) for s in Severity.values},
    )
    return {"open": counts["open"], "acknowledged": counts["acknowledged"], "latest_id": counts["latest_id"],
            "by_severity": {s: counts[s] for s in Severity.values}}


def evidence_of_detection(*, since=None) -> dict:
    """What compliance collectors can cite: alerts raised and handled, incidents and clocks met."""
    alert_rows = Alert.objects.all() if since is None else Alert.objects.filter(raised_at__gte=since)
    incident_rows = Incident.objects.all() if since is None else Incident.objects.filter(opened_at__gte=since)
    by_state = dict(alert_rows.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
    now = timezone.now()
    clocks = [c for i in incident_rows.prefetch_related("clocks") for c in i.clocks.all()]
    return {
        "alerts": sum(by_state.values()), "alerts_by_state": by_state,
        "incidents": incident_rows.count(),
        "clocks": len(clocks), "clocks_met_in_time": sum(1 for c in clocks if c.met_at and c.met_at <= c.due_at),
        "clocks_missed": sum(1 for c in clocks if (c.met_at or now) > c.due_at),
    }


def held_agents(environment_name: str) -> dict[str, dict]:
    """data.warden_registry.held_agents of one environment: agents whose actions an open alert
    holds for approval (automatic response ``require_approval``), with the first such alert."""
    held: dict[str, dict] = {}
    open_holds = (
        Alert.objects.filter(state__in=OPEN_STATES, response__action=ResponseAction.REQUIRE_APPROVAL)
        .select_related("agent").order_by("raised_at", "pk")
    )
    for alert in open_holds:
        if environment_name in alert.response.get("environments", ()) and alert.agent.name not in held:
            held[alert.agent.name] = {"alert": alert.pk, "reason": alert.summary[:300],
                                      "since": alert.response.get("at", "")}
    return held
