"""How long audit data is kept: retention policies, and the job that removes what expired.

Events are checkpointed first; then each deletion and the signed retention checkpoint
naming every removed event commit together, so a verification can tell an expired event
from a removed one.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from controlplane.audit import conf, selectors, storage
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


def apply_retention(*, now=None, max_events: int | None = None) -> list[Checkpoint]:
    """Delete events (and batches, quarantined records) older than their agent's retention."""
    now = now or timezone.now()
    max_events = max_events or conf.checkpoint_max_events()
    create_checkpoints()
    agents = list(AuditEvent.objects.values_list("agent_id", flat=True).distinct())
    agents += list(QuarantinedRecord.objects.values_list("agent_id", flat=True).distinct())
    agents += list(Batch.objects.values_list("agent_id", flat=True).distinct())
    days = selectors.retention_days_by_agent(set(agents))
    made = []
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
                made.append(sign_and_store(CheckpointKind.RETENTION, entries, {
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
