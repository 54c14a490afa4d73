"""How long audit data is kept: retention policies, and the job that removes what expired.

Events are checkpointed first; then each removal and the signed retention checkpoints
naming every removed event commit together, so a verification can tell an expired event
from a removed one.

On PostgreSQL events are partitioned by month of their signed time (migration 0008): a
month that the longest retention of any agent has passed is dropped whole
(`warden_audit_drop_partitions`, as the retention role), in milliseconds instead of a
DELETE per row. What is left (agents with a shorter retention, the default partition)
goes row by row through `warden_audit_retention_delete`. The months ahead are created by
`create_partitions_ahead` (beat task `audit.create_partitions`) before their rows arrive.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from controlplane.audit import conf, partitions, selectors, storage
from controlplane.audit.checkpoints import covered_upto, create_checkpoints, sign_and_store
from controlplane.audit.merkle import content_hash
from controlplane.audit.models import (
    AuditEvent,
    Batch,
    BatchStatus,
    Checkpoint,
    CheckpointKind,
    QuarantinedRecord,
    RetentionPolicy,
)
from controlplane.changelog.models import ChangeAction
from controlplane.changelog.services import record_change, snapshot
from controlplane.core.exceptions import ConflictError, InvalidInput
from controlplane.identity.models import Agent

logger = logging.getLogger(__name__)

EVENTS_TABLE = AuditEvent._meta.db_table
MONTHS_AHEAD = 3  # partitions created ahead of the current month


@transaction.atomic
def set_retention_policy(*, days: int, environment: str = "", agent: Agent | None = None, by) -> RetentionPolicy:
    """Create or change how long events are kept for an environment or one agent."""
    if bool(environment) == (agent is not None):
        raise InvalidInput("give either an environment or an agent", field="environment")
    minimum = conf.min_retention_days()
    if days < minimum:
        raise InvalidInput(
            f"audit logs are kept at least {minimum} days (EU AI Act: six months)", field="days"
        )
    lookup = {"agent": agent} if agent is not None else {"environment": environment, "agent__isnull": True}
    policy = RetentionPolicy.objects.select_for_update().filter(**lookup).order_by("pk").first()
    before = snapshot(policy) if policy else None
    if policy is None:
        policy = RetentionPolicy.objects.create(environment=environment, agent=agent, days=days)
    else:
        policy.days = days
        policy.save(update_fields=["days", "updated_at"])
    record_change(
        policy, action=ChangeAction.UPDATE if before else ChangeAction.CREATE, by=by,
        before=before, after=snapshot(policy),
    )
    return policy


@transaction.atomic
def delete_retention_policy(policy: RetentionPolicy, *, by) -> None:
    if not RetentionPolicy.objects.filter(pk=policy.pk).exists():
        raise ConflictError("the policy is already gone")
    record_change(policy, action=ChangeAction.DELETE, by=by, before=snapshot(policy))
    policy.delete()


def create_partitions_ahead(*, now: datetime | None = None, months: int = MONTHS_AHEAD) -> list[str]:
    """The events partitions of this month and the next `months`, created where missing
    (PostgreSQL; a no-op elsewhere). Returns the names created."""
    if connection.vendor != "postgresql":
        return []
    first = partitions.month_start(now or timezone.now())
    with connection.cursor() as cursor:
        created = partitions.ensure_partitions(cursor, EVENTS_TABLE, first, partitions.add_months(first, months + 1))
    if created:
        logger.info("audit events partitions created ahead: %s", ", ".join(created))
    return created


def drop_expired_partitions(*, now: datetime, max_events: int) -> list[Checkpoint]:
    """Drop, oldest first, each month of events that every agent's retention has passed,
    after signing retention checkpoints that name its events. Stops at a month holding an
    event no checkpoint covers yet. PostgreSQL only."""
    if connection.vendor != "postgresql":
        return []
    days = selectors.retention_days_by_agent(Agent.objects.values_list("pk", flat=True))
    longest = max([conf.retention_days(), *days.values()])
    # The database refuses a cutoff inside the minimum retention by its own clock, whatever `now` says.
    cutoff = min(now - timedelta(days=longest), timezone.now() - timedelta(days=partitions.MIN_RETENTION_DAYS))
    made: list[Checkpoint] = []
    with connection.cursor() as cursor:
        months = partitions.monthly_partitions(cursor, EVENTS_TABLE)
    for name, lower, upper in months:
        if upper > cutoff:
            break
        with transaction.atomic():
            storage.advisory_xact_lock(storage.CHECKPOINT_LOCK)
            covered = covered_upto()
            in_month = AuditEvent.objects.filter(time__gte=lower, time__lt=upper)
            newest = in_month.order_by("-id").values_list("id", flat=True).first()
            if newest is not None and newest > covered:
                logger.warning("audit retention: %s holds events not checkpointed yet; not dropped", name)
                break
            count = 0
            for entries in _entries_in_chunks(in_month, max_events):
                count += len(entries)
                made.append(sign_and_store(str(CheckpointKind.RETENTION), entries, {
                    "partition": name, "partition_from": lower.isoformat(), "partition_to": upper.isoformat(),
                    "retention_days": longest, "cutoff": cutoff.isoformat(),
                    "quarantined_removed": 0, "batches_removed": 0,
                }))
            with connection.cursor() as cursor:
                dropped = partitions.drop_partitions_before(cursor, EVENTS_TABLE, upper)
            logger.info("audit retention: dropped %s (%s events, before %s)", ", ".join(dropped), count, upper)
    return made


def _entries_in_chunks(events: QuerySet[AuditEvent], size: int) -> Iterator[list[tuple[int, uuid.UUID, bytes]]]:
    last = 0
    while True:
        rows = list(events.filter(id__gt=last).order_by("id").values(*storage.EVENT_COLUMNS)[:size])
        if not rows:
            return
        yield [(row["id"], row["record_id"], content_hash(row)) for row in rows]
        last = rows[-1]["id"]


def apply_retention(*, now=None, max_events: int | None = None) -> list[Checkpoint]:
    """Remove events (and batches, quarantined records) older than their agent's retention:
    whole months first (PostgreSQL), then row by row."""
    now = now or timezone.now()
    max_events = max_events or conf.checkpoint_max_events()
    create_checkpoints()
    made = drop_expired_partitions(now=now, max_events=max_events)
    agents = list(AuditEvent.objects.values_list("agent_id", flat=True).distinct())
    agents += list(QuarantinedRecord.objects.values_list("agent_id", flat=True).distinct())
    agents += list(Batch.objects.values_list("agent_id", flat=True).distinct())
    days = selectors.retention_days_by_agent(set(agents))
    for agent_id, keep in sorted(days.items(), key=lambda item: str(item[0])):
        cutoff = now - timedelta(days=keep)
        while True:
            with transaction.atomic():
                storage.advisory_xact_lock(storage.CHECKPOINT_LOCK)
                covered = covered_upto()
                old = list(
                    AuditEvent.objects.filter(agent_id=agent_id, stored_at__lt=cutoff, id__lte=covered)
                    .order_by("id").values(*storage.EVENT_COLUMNS)[:max_events]
                )
                quarantined = list(
                    QuarantinedRecord.objects.filter(agent_id=agent_id, quarantined_at__lt=cutoff)
                    .values_list("pk", flat=True)
                )
                batches = list(
                    Batch.objects.filter(agent_id=agent_id, received_at__lt=cutoff, status=BatchStatus.VERIFIED)
                    .values_list("pk", flat=True)
                )
                if not old and not quarantined and not _expired_batches(agent_id, cutoff).exists():
                    break
                entries = [(row["id"], row["record_id"], content_hash(row)) for row in old]
                _, removed_quarantined, removed_batches = storage.delete_expired(
                    event_ids=[row["id"] for row in old], quarantined_ids=quarantined, batch_ids=batches
                )
                made.append(sign_and_store(str(CheckpointKind.RETENTION), entries, {
                    "agent_id": str(agent_id),
                    "retention_days": keep,
                    "cutoff": cutoff.isoformat(),
                    "quarantined_removed": removed_quarantined,
                    "batches_removed": removed_batches,
                }))
                logger.info(
                    "audit retention for agent %s: %s events, %s quarantined, %s batches older than %s removed",
                    agent_id, len(entries), removed_quarantined, removed_batches, cutoff.isoformat(),
                )
            if len(old) < max_events:
                break
    return made


def _expired_batches(agent_id, cutoff):
    return Batch.objects.filter(agent_id=agent_id, received_at__lt=cutoff, status=BatchStatus.VERIFIED).exclude(
        pk__in=AuditEvent.objects.filter(agent_id=agent_id).values("batch_id")
    ).exclude(pk__in=QuarantinedRecord.objects.filter(agent_id=agent_id).values("batch_id"))
