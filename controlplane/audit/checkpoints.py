"""Signed checkpoints over the stored log: the control plane's key, and appending a
checkpoint over the events stored since the previous one.

A checkpoint covers events in id order and keeps per event its id, record id and content
hash (see `merkle`); the Merkle root of those leaves, the hash of the previous checkpoint
and the count are signed with the control plane's Ed25519 key. `integrity.verify_log`
checks the stored log against them.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from typing import Any

from cryptography.fernet import InvalidToken
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from agents_sdk.keys import encode_public_key, key_fingerprint, raw_public_key
from agents_sdk.records import canonical_json
from controlplane.audit import conf, storage, witness
from controlplane.audit.merkle import content_hash, leaf_hash, merkle_root, pack_entries
from controlplane.audit.models import AuditEvent, Checkpoint, CheckpointKey, CheckpointKind
from controlplane.changelog.models import ChangeAction
from controlplane.changelog.services import record_change, snapshot
from controlplane.core.crypto import secrets_at_rest

logger = logging.getLogger(__name__)


@transaction.atomic
def active_checkpoint_key() -> CheckpointKey:
    """The key checkpoints are signed with, generated (and stored encrypted) on first use."""
    key = CheckpointKey.objects.select_for_update().filter(is_active=True).first()
    if key is not None:
        return key
    return _new_key()


@transaction.atomic
def rotate_checkpoint_key(*, by=None) -> tuple[CheckpointKey, CheckpointKey | None]:
    """(the new key, the one it replaces): an explicit, logged rotation.

    Checkpoints already signed keep verifying with the old key, so pin both
    (WARDEN_AUDIT_CHECKPOINT_PUBLIC_KEYS) for the overlap, then drop the old one once no
    verifier needs checkpoints older than the rotation.
    """
    old = CheckpointKey.objects.select_for_update().filter(is_active=True).first()
    if old is not None:
        before = snapshot(old)
        CheckpointKey.objects.filter(pk=old.pk).update(is_active=False)
        old.is_active = False
        record_change(old, action=ChangeAction.ROTATE, by=by, before=before, after=snapshot(old))
    new = _new_key()
    record_change(new, action=ChangeAction.CREATE, by=by, after=snapshot(new))
    logger.warning(
        "audit checkpoint key rotated: %s replaces %s; pin the new public key %s",
        new.key_id[:16], old.key_id[:16] if old else "none", new.public_key,
    )
    return new, old


def _new_key() -> CheckpointKey:
    private = Ed25519PrivateKey.generate()
    raw_private = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return CheckpointKey.objects.create(
        key_id=key_fingerprint(raw_public_key(private.public_key())),
        public_key=encode_public_key(private.public_key()),
        encrypted_private_key=secrets_at_rest().encrypt(raw_private),
    )


def _private_key(key: CheckpointKey) -> Ed25519PrivateKey:
    try:
        raw = secrets_at_rest().decrypt(bytes(key.encrypted_private_key))
    except InvalidToken as exc:
        raise RuntimeError(
            f"checkpoint key {key.key_id[:16]} cannot be decrypted: WARDEN_SECRET_KEY or WARDEN_ENCRYPTION_KEY changed"
        ) from exc
    return Ed25519PrivateKey.from_private_bytes(raw)


def _high_water_mark() -> int:
    """The highest event id below which every event is committed (no insert is in flight)."""
    with transaction.atomic():
        storage.advisory_xact_lock(storage.EVENTS_LOCK)
        return AuditEvent.objects.aggregate(top=Max("id"))["top"] or 0


def covered_upto() -> int:
    """The highest event id an events checkpoint covers (0 before the first)."""
    return Checkpoint.objects.filter(kind=CheckpointKind.EVENTS).aggregate(top=Max("last_event_id"))["top"] or 0


def sign_and_store(kind: str, entries: list[tuple[int, uuid.UUID, bytes]], extra: dict[str, Any]) -> Checkpoint:
    """Append a checkpoint (call inside a transaction holding storage.CHECKPOINT_LOCK)."""
    key = active_checkpoint_key()
    previous = Checkpoint.objects.order_by("-sequence").first()
    root = merkle_root([leaf_hash(i, d) for i, _, d in entries])
    packed = pack_entries(entries)
    created_at = timezone.now()
    statement = {
        "format": "warden-audit-checkpoint/1",
        "sequence": previous.sequence + 1 if previous else 1,
        "kind": kind,
        "first_event_id": entries[0][0] if entries else None,
        "last_event_id": entries[-1][0] if entries else None,
        "event_count": len(entries),
        "merkle_root": root,
        "entries_sha256": hashlib.sha256(packed).hexdigest(),
        "previous": previous.statement_hash if previous else None,
        "created_at": created_at.isoformat(),
        "key_id": key.key_id,
        **extra,
    }
    body = canonical_json(statement)
    statement_hash = hashlib.sha256(body).hexdigest()
    signature = base64.b64encode(_private_key(key).sign(body)).decode("ascii")
    witness.append_after_commit(witness.checkpoint_head(statement, statement_hash, signature), statement=statement)
    return Checkpoint.objects.create(
        sequence=statement["sequence"],
        kind=kind,
        first_event_id=statement["first_event_id"],
        last_event_id=statement["last_event_id"],
        event_count=len(entries),
        merkle_root=root,
        entries=packed,
        statement=statement,
        statement_hash=statement_hash,
        signature=signature,
        key=key,
        created_at=created_at,
    )


def create_checkpoints(*, max_events: int | None = None) -> list[Checkpoint]:
    """Checkpoint every committed event not yet covered, at most `max_events` per checkpoint."""
    max_events = max_events or conf.checkpoint_max_events()
    upto = _high_water_mark()
    made = []
    while True:
        with transaction.atomic():
            storage.advisory_xact_lock(storage.CHECKPOINT_LOCK)
            covered = covered_upto()
            if covered >= upto:
                return made
            entries = []
            for row in storage.events_between(covered, upto):
                entries.append((row["id"], row["record_id"], content_hash(row)))
                if len(entries) >= max_events:
                    break
            if not entries:
                return made
            made.append(sign_and_store(CheckpointKind.EVENTS, entries, {}))
            logger.info("audit checkpoint %s over %s events", made[-1].sequence, len(entries))
