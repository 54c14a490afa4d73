"""Reads: the grants an environment's bundle carries, the queue, an agent's recent history,
and the figures compliance evidence needs."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from controlplane.approvals.grants import engine_entry
from controlplane.approvals.models import ApprovalKind, ApprovalRequest, ApprovalState, ApprovalVote, Verdict


def bundle_grants(environment) -> dict:
    """`approvals` (unconsumed, unexpired grants of the environment, keyed by grant id) and
    `approvals_consumed` (grant ids consumed but not yet expired: named as such by the policy)."""
    now = timezone.now()
    live = (
        ApprovalRequest.objects.filter(
            kind=ApprovalKind.ACTION, state=ApprovalState.APPROVED, environment=environment.name,
            grant_expires_at__gt=now,
        )
        .select_related("agent")
        .order_by("grant_id")
    )
    approvals, consumed = {}, []
    for request in live:
        if request.consumed_at is None:
            approvals[request.grant_id] = engine_entry(request)
        else:
            consumed.append(request.grant_id)
    return {"approvals": approvals, "approvals_consumed": consumed}


def requests() -> QuerySet[ApprovalRequest]:
    return ApprovalRequest.objects.select_related("agent", "requested_by").prefetch_related("votes__user")


def agent_history(request: ApprovalRequest, limit: int = 10) -> list[dict]:
    """The agent's latest audit events before this request: what a person checks first."""
    if request.agent_id is None:
        return []
    from controlplane.audit.models import AuditEvent

    events = AuditEvent.objects.filter(agent_id=request.agent_id).order_by("-time")[:limit]
    return [
        {"time": event.time, "kind": event.kind, "tool": event.tool, "effect": event.effect, "session_id": event.session_id}
        for event in events
    ]


def oversight_figures(start: datetime, end: datetime) -> dict:
    """Approval evidence for a period: counts per state, four eyes upheld, time to decision."""
    period = ApprovalRequest.objects.filter(created_at__gte=start, created_at__lt=end)
    counts = dict(period.values_list("state").annotate(n=Count("pk")).values_list("state", "n"))
    decided = period.filter(decided_at__isnull=False)
    seconds = sorted((r.decided_at - r.created_at).total_seconds() for r in decided.only("created_at", "decided_at"))
    self_approved = (
        ApprovalVote.objects.filter(request__in=period, verdict=Verdict.APPROVE)
        .filter(Q(user=F("request__requested_by")) | Q(user__email=F("request__agent__owner_email")))
        .count()
    )
    return {
        "requests": sum(counts.values()),
        "approved": counts.get(ApprovalState.APPROVED, 0),
        "denied": counts.get(ApprovalState.DENIED, 0),
        "expired": counts.get(ApprovalState.EXPIRED, 0),
        "cancelled": counts.get(ApprovalState.CANCELLED, 0),
        "pending": counts.get(ApprovalState.PENDING, 0),
        # Services refuse an approver who is the agent's owner, its principal or the release
        # author; a count above zero would mean data written around them.
        "approver_was_requester": self_approved,
        "median_seconds_to_decision": seconds[len(seconds) // 2] if seconds else None,
    }



def compliance_records(context) -> list:
    """Approval decisions in the report's environment and period, as the compliance
    collectors read them (controlplane.compliance.collectors.policy.ApprovalRecord).
    Requester and decider are people's e-mail addresses, so a self-approval shows."""
    from controlplane.compliance.collectors.policy import ApprovalRecord

    outcome = {ApprovalState.APPROVED: "granted", ApprovalState.DENIED: "refused", ApprovalState.EXPIRED: "expired"}
    decided = (
        requests()
        .filter(environment=context.environment.name, decided_at__gte=context.period_start,
                decided_at__lt=context.period_end, state__in=list(outcome))
        .order_by("decided_at")
    )
    records = []
    for request in decided:
        requester = request.agent.owner_email if request.agent_id else getattr(request.requested_by, "email", "")
        deciders = [vote.user.email or vote.user.username for vote in request.votes.all()] or [""]
        for decider in deciders:
            records.append(ApprovalRecord(
                id=str(request.pk), agent=request.agent.name if request.agent_id else f"release:{request.tool}",
                requested_by=requester, decided_by=decider, decided_at=request.decided_at,
                outcome=outcome[request.state],
            ))
    return records
