"""Taking batches in: store a batch durably before the 202, and enqueue its verification
once the transaction commits; re-enqueue batches a lost task or a killed worker left pending.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from controlplane.audit import conf, records
from controlplane.audit.models import Batch, BatchStatus
from controlplane.core.exceptions import InvalidInput
from controlplane.core.tasks import enqueue
from controlplane.identity.models import Agent

VERIFY_TASK = "audit.verify_batch"


def ingest_batch(*, agent: Agent, key_id: str, body: bytes, content_encoding: str = "") -> Batch:
    """Store a batch of records as received and enqueue its verification after commit.

    Refused before anything is stored (InvalidInput naming each bad record, or
    records.BatchTooLarge): a body that is not a batch, and any record whose form breaks
    the rules the SDK's signer follows (`agents_sdk.records.record_form_problem`), so no
    record the store cannot hold ever reaches the worker. Signatures, keys and chains are
    judged later by the worker, record by record. The body is stored encrypted (it holds
    the values the API shows masked) with the mark that its form was checked, so the
    worker does not check it again (`records.seal_checked_batch`); a gzip body is stored
    as it came, compressed.
    """
    data = records.inflate(body, content_encoding, limit=conf.max_batch_bytes())
    parsed = records.parse_batch(data)
    problems = records.batch_problems(parsed)
    if problems:
        raise InvalidInput(
            "; ".join(problems) + ". Nothing was stored: fix or drop these records and send the batch again",
            field="records",
        )
    with transaction.atomic():
        batch = Batch.objects.create(
            agent=agent, key_id=key_id, record_count=len(parsed), byte_count=len(data),
            # A gzip body is kept as sent (its inflated form is what was checked): fewer bytes.
            body=records.seal_checked_batch(data, gzipped=body if data is not body else None),
        )
        enqueue(VERIFY_TASK, batch.pk, queue=conf.verify_queue())
    return batch


def requeue_stale_batches(*, older_than_seconds: int | None = None) -> list[int]:
    """Enqueue again every batch still pending whose last attempt (or arrival) is old.

    Covers a task lost with its broker or a worker killed with the task unacknowledged:
    verification is idempotent, so a second delivery costs only time.
    """
    seconds = conf.stale_batch_seconds() if older_than_seconds is None else older_than_seconds
    cutoff = timezone.now() - timezone.timedelta(seconds=seconds)
    stale = list(
        Batch.objects.filter(status=BatchStatus.PENDING, received_at__lte=cutoff)
        .exclude(started_at__gt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:1000]
    )
    for batch_id in stale:
        enqueue(VERIFY_TASK, batch_id, queue=conf.verify_queue())
    return stale
