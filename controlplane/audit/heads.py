"""The signed audit head that goes into every bundle's data (`data.warden_registry.audit_head`).

Engines and verifiers outside the database keep the newest head they have seen: a later head
with a lower sequence, or a log that ends before a head they hold, is a rollback or a cut
tail. The head is the checkpoint statement and its Ed25519 signature (over the statement's
canonical JSON; `statement_hash` is its SHA-256), so it verifies with the pinned checkpoint
key alone (docs/audit.md).

A head that moved with every checkpoint would rebuild every environment's bundle every
minute; bundles carry the newest head as of the last WARDEN_AUDIT_BUNDLE_HEAD_SECONDS
boundary instead (0: always the newest), at most one rebuild per period. The unauthenticated
`GET /api/v1/audit/head/` always has the newest.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from controlplane.audit import witness
from controlplane.audit.models import Checkpoint
from controlplane.settings.registry import setting


def bundle_head(now: datetime | None = None) -> dict[str, Any] | None:
    """The head bundles carry, or None before the first checkpoint of the period."""
    checkpoints = Checkpoint.objects.defer("entries").order_by("-sequence")
    interval = int(setting("WARDEN_AUDIT_BUNDLE_HEAD_SECONDS"))
    if interval:
        moment = (now or timezone.now()).timestamp()
        checkpoints = checkpoints.filter(created_at__lte=datetime.fromtimestamp(moment - moment % interval, tz=UTC))
    checkpoint = checkpoints.first()
    if checkpoint is None:
        return None
    return {
        **witness.checkpoint_head(checkpoint.statement, checkpoint.statement_hash, checkpoint.signature),
        "statement": checkpoint.statement,
    }


def registry_entry() -> dict[str, Any]:
    """`{"audit_head": head}` for registry data, or nothing before the first checkpoint (so a
    log without checkpoints leaves bundles as they were)."""
    head = bundle_head()
    return {"audit_head": head} if head is not None else {}
