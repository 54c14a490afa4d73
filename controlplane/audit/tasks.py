"""Celery tasks of the audit pipeline: unpack ids, call a service, nothing else."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError, OperationalError

from controlplane.audit import checkpoints, ingestion, retention, verification
from controlplane.metrics.instruments import record_verified_batch


@shared_task(
    name="audit.verify_batch",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, DatabaseError),
    retry_backoff=2,
    retry_backoff_max=120,
    max_retries=20,
)
def verify_batch(batch_id: int) -> dict | None:
    """Verify a stored batch; idempotent (a verified batch is left as it is)."""
    outcome = verification.verify_batch(batch_id)
    record_verified_batch(outcome)  # GET /metrics: events stored, quarantined, ingestion lag
    if outcome is None:
        return None
    return {"batch_id": outcome.batch_id, "events": outcome.events, "quarantined": outcome.quarantined}


@shared_task(name="audit.checkpoint", acks_late=True, autoretry_for=(OperationalError,), max_retries=3)
def checkpoint() -> list[int]:
    """Sign a checkpoint over the events stored since the last one."""
    return [c.sequence for c in checkpoints.create_checkpoints()]


@shared_task(name="audit.retention", acks_late=True, autoretry_for=(OperationalError,), max_retries=3)
def retention_job() -> list[int]:
    """Delete events older than their retention, recording them in a signed checkpoint."""
    return [c.sequence for c in retention.apply_retention()]


@shared_task(name="audit.create_partitions", acks_late=True, autoretry_for=(OperationalError,), max_retries=3)
def create_partitions() -> list[str]:
    """Create the events' monthly partitions ahead of the current month (PostgreSQL)."""
    return retention.create_partitions_ahead()


@shared_task(name="audit.requeue_stale_batches", acks_late=True)
def requeue_stale_batches() -> list[int]:
    """Enqueue again batches a lost task or a killed worker left pending."""
    return ingestion.requeue_stale_batches()
