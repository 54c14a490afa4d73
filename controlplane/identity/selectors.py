"""Reads of the identity domain that are more than a filter."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone

from controlplane.identity.models import Agent, AgentKey, AgentStatus


def agents_with_key_counts() -> QuerySet[Agent]:
    return Agent.objects.annotate(active_key_count=Count("keys", filter=Q(keys__revoked_at__isnull=True)))


def active_keys(agent: Agent) -> QuerySet[AgentKey]:
    return agent.keys.filter(revoked_at__isnull=True)


def key_valid_at(key_id: str, moment: datetime) -> AgentKey | None:
    """The key with this id if it existed and was not yet revoked at `moment` (for audit verification)."""
    return (
        AgentKey.objects.select_related("agent")
        .filter(key_id=key_id, created_at__lte=moment)
        .filter(Q(revoked_at__isnull=True) | Q(revoked_at__gt=moment))
        .first()
    )


def agents_due_for_key_rotation(max_age: timedelta, now: datetime | None = None) -> QuerySet[Agent]:
    """Agents not revoked whose newest active key is older than `max_age`, or that have no active key."""
    now = now or timezone.now()
    return (
        Agent.objects.exclude(status=AgentStatus.REVOKED)
        .annotate(newest_key=Max("keys__created_at", filter=Q(keys__revoked_at__isnull=True)))
        .filter(Q(newest_key__isnull=True) | Q(newest_key__lt=now - max_age))
    )
