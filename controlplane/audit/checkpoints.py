"""Signed checkpoints over the stored log, the retention job, and the check that names
what changed.

Every event gets a content hash: SHA-256 of the canonical JSON of its stored columns
(everything but its id). A checkpoint covers the events stored since the previous one,
in id order, and keeps per event its id, record id and content hash; the Merkle root
(RFC 6962 style: leaf = H(0x00 ‖ id ‖ content hash), node = H(0x01 ‖ left ‖ right)) of
those leaves, the hash of the previous checkpoint and the count are signed with the
control plane's Ed25519 key. So a later check can say which event was changed (its
content hash differs), removed (an entry with no row, unless a signed retention
checkpoint removed it), inserted (a row in a covered range with no entry) or moved (a
row holds the content another entry names).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import struct
import uuid
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.fernet import InvalidToken
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from agents_sdk.keys import encode_public_key, key_fingerprint, raw_public_key
from agents_sdk.records import canonical_json, parse_jsonl_line
from controlplane.audit import conf, records
from controlplane.audit.models import (
    AuditEvent,
    Batch,
    BatchStatus,
    Checkpoint,
    CheckpointKey,
    CheckpointKind,
    QuarantinedRecord,
)
from controlplane.audit.services import EVENTS_LOCK
from controlplane.core.crypto import secrets_at_rest

logger = logging.getLogger(__name__)

CHECKPOINT_LOCK = 0x57415244_43484B50  # "WARDCHKP"
ENTRY = struct.Struct(">q16s32s")
EVENT_FIELDS = (
    "id", "record_id", "agent_id", "key_id", "session_id", "seq", "kind", "time", "tool", "effect",
    "rule_ids", "payload", "masked_paths", "prev_hash", "record_hash", "sealed_record", "batch_id", "stored_at",
)
READ_CHUNK = 5000


# -- the control plane's key ------------------------------------------------------------


@transaction.atomic
def active_checkpoint_key() -> CheckpointKey:
    """The key checkpoints are signed with, generated (and stored encrypted) on first use."""
    key = CheckpointKey.objects.select_for_update().filter(is_active=True).first()
    if key is not None:
        return key
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


# -- hashing ----------------------------------------------------------------------------


def content_hash(row: dict[str, Any]) -> bytes:
    """SHA-256 of an event's stored columns except its id, as canonical JSON."""
    data = {
        "record_id": str(row["record_id"]),
        "agent_id": str(row["agent_id"]),
        "key_id": row["key_id"],
        "session_id": row["session_id"],
        "seq": row["seq"],
        "kind": row["kind"],
        "time": row["time"].isoformat(),
        "tool": row["tool"],
        "effect": row["effect"],
        "rule_ids": row["rule_ids"],
        "payload": row["payload"],
        "masked_paths": row["masked_paths"],
        "prev_hash": row["prev_hash"],
        "record_hash": row["record_hash"],
        "sealed_sha256": hashlib.sha256(bytes(row["sealed_record"])).hexdigest(),
        "batch_id": row["batch_id"],
        "stored_at": row["stored_at"].isoformat(),
    }
    return hashlib.sha256(canonical_json(data)).digest()


def leaf_hash(event_id: int, digest: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + event_id.to_bytes(8, "big", signed=True) + digest).digest()


def merkle_root(leaves: list[bytes]) -> str:
    """RFC 6962 Merkle tree hash of the leaves (hex); SHA-256 of nothing for no leaves."""
    if not leaves:
        return hashlib.sha256(b"").hexdigest()
    level = leaves
    while len(level) > 1:
        nxt = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()


def _pack(entries: list[tuple[int, uuid.UUID, bytes]]) -> bytes:
    return b"".join(ENTRY.pack(event_id, record_id.bytes, digest) for event_id, record_id, digest in entries)


def unpack_entries(data: bytes) -> list[tuple[int, uuid.UUID, bytes]]:
    return [(i, uuid.UUID(bytes=r), d) for i, r, d in ENTRY.iter_unpack(bytes(data))]


def _rows(id_after: int, id_upto: int):
    """Events with id in (id_after, id_upto], in id order, read in chunks."""
    last = id_after
    while True:
        chunk = list(
            AuditEvent.objects.filter(id__gt=last, id__lte=id_upto).order_by("id").values(*EVENT_FIELDS)[:READ_CHUNK]
        )
        if not chunk:
            return
        yield from chunk
        last = chunk[-1]["id"]


# -- writing checkpoints ----------------------------------------------------------------


def _lock(key: int, *, shared: bool = False) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT pg_advisory_xact_lock{'_shared' if shared else ''}(%s)", [key])


def _high_water_mark() -> int:
    """The highest event id below which every event is committed (no insert is in flight)."""
    with transaction.atomic():
        _lock(EVENTS_LOCK)
        return AuditEvent.objects.aggregate(top=Max("id"))["top"] or 0


def _sign_and_store(kind: str, entries: list[tuple[int, uuid.UUID, bytes]], extra: dict[str, Any]) -> Checkpoint:
    """Append a checkpoint (call inside a transaction holding CHECKPOINT_LOCK)."""
    key = active_checkpoint_key()
    previous = Checkpoint.objects.order_by("-sequence").first()
    root = merkle_root([leaf_hash(i, d) for i, _, d in entries])
    packed = _pack(entries)
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
    return Checkpoint.objects.create(
        sequence=statement["sequence"],
        kind=kind,
        first_event_id=statement["first_event_id"],
        last_event_id=statement["last_event_id"],
        event_count=len(entries),
        merkle_root=root,
        entries=packed,
        statement=statement,
        statement_hash=hashlib.sha256(body).hexdigest(),
        signature=base64.b64encode(_private_key(key).sign(body)).decode("ascii"),
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
            _lock(CHECKPOINT_LOCK)
            covered = (
                Checkpoint.objects.filter(kind=CheckpointKind.EVENTS).aggregate(top=Max("last_event_id"))["top"] or 0
            )
            if covered >= upto:
                return made
            entries = []
            for row in _rows(covered, upto):
                entries.append((row["id"], row["record_id"], content_hash(row)))
                if len(entries) >= max_events:
                    break
            if not entries:
                return made
            made.append(_sign_and_store(CheckpointKind.EVENTS, entries, {}))
            logger.info("audit checkpoint %s over %s events", made[-1].sequence, len(entries))


# -- retention --------------------------------------------------------------------------


def apply_retention(*, now=None, max_events: int | None = None) -> list[Checkpoint]:
    """Delete events (and batches, quarantined records) older than their agent's retention.

    Events are checkpointed first, then each deletion and the signed retention
    checkpoint naming every removed event commit together, so a verification can tell
    an expired event from a removed one.
    """
    from controlplane.audit.services import retention_days_by_agent

    now = now or timezone.now()
    max_events = max_events or conf.checkpoint_max_events()
    create_checkpoints()
    agents = list(AuditEvent.objects.values_list("agent_id", flat=True).distinct())
    agents += list(QuarantinedRecord.objects.values_list("agent_id", flat=True).distinct())
    agents += list(Batch.objects.values_list("agent_id", flat=True).distinct())
    days = retention_days_by_agent(set(agents))
    made = []
    for agent_id, keep in sorted(days.items(), key=lambda item: str(item[0])):
        cutoff = now - timedelta(days=keep)
        while True:
            with transaction.atomic():
                _lock(CHECKPOINT_LOCK)
                covered = (
                    Checkpoint.objects.filter(kind=CheckpointKind.EVENTS).aggregate(top=Max("last_event_id"))["top"]
                    or 0
                )
                old = list(
                    AuditEvent.objects.filter(agent_id=agent_id, stored_at__lt=cutoff, id__lte=covered)
                    .order_by("id").values(*EVENT_FIELDS)[:max_events]
                )
                quarantined = QuarantinedRecord.objects.filter(agent_id=agent_id, quarantined_at__lt=cutoff)
                if not old and not quarantined.exists() and not _expired_batches(agent_id, cutoff).exists():
                    break
                _allow_retention_deletes()
                entries = [(row["id"], row["record_id"], content_hash(row)) for row in old]
                removed_quarantined = quarantined.delete()[0]
                AuditEvent.objects.filter(pk__in=[row["id"] for row in old]).delete()
                removed_batches = _expired_batches(agent_id, cutoff).delete()[0]
                made.append(_sign_and_store(CheckpointKind.RETENTION, entries, {
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


def _allow_retention_deletes() -> None:
    # Transaction-local: the append-only trigger lets DELETE through only while it is set.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL warden.audit_retention = 'on'")


# -- verification -----------------------------------------------------------------------


@dataclass
class Problem:
    """One thing wrong with the stored log, named for a person."""

    problem: str  # changed | removed | inserted | moved | checkpoint
    message: str
    event_id: int | None = None
    record_id: str | None = None
    checkpoint: int | None = None
    fields: list[str] = field(default_factory=list)


@dataclass
class Report:
    ok: bool
    checkpoints: int
    events_checked: int
    events_removed_by_retention: int
    events_not_checkpointed: int
    problems: list[Problem]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_log(*, max_problems: int = 1000) -> Report:
    """Check the stored log against the signed checkpoints and name every difference."""
    problems: list[Problem] = []
    checkpoints = list(Checkpoint.objects.select_related("key").order_by("sequence"))
    retained: dict[int, int] = {}
    previous = None
    for checkpoint in checkpoints:
        problems.extend(_checkpoint_problems(checkpoint, previous))
        if checkpoint.kind == CheckpointKind.RETENTION:
            for event_id, _, _ in unpack_entries(checkpoint.entries):
                retained[event_id] = checkpoint.sequence
        previous = checkpoint

    checked = 0
    removed_by_retention = 0
    covered = 0
    for checkpoint in checkpoints:
        if checkpoint.kind != CheckpointKind.EVENTS or not checkpoint.event_count:
            continue
        entries = unpack_entries(checkpoint.entries)
        by_id = {event_id: (record_id, digest) for event_id, record_id, digest in entries}
        by_digest = {digest: (event_id, record_id) for event_id, record_id, digest in entries}
        rows = {}
        for row in _rows(checkpoint.first_event_id - 1, checkpoint.last_event_id):
            rows[row["id"]] = row
        for event_id, record_id, digest in entries:
            row = rows.pop(event_id, None)
            if row is None:
                if event_id in retained:
                    removed_by_retention += 1
                    continue
                problems.append(Problem(
                    "removed", f"event {event_id} (record_id {record_id}) was removed from the log",
                    event_id, str(record_id), checkpoint.sequence,
                ))
                continue
            checked += 1
            actual = content_hash(row)
            if actual == digest:
                continue
            moved = by_digest.get(actual)
            if moved is not None:
                problems.append(Problem(
                    "moved",
                    f"event {event_id} now holds what checkpoint {checkpoint.sequence} recorded as event {moved[0]} "
                    f"(record_id {moved[1]}): rows were swapped or reordered",
                    event_id, str(record_id), checkpoint.sequence,
                ))
                continue
            fields = _changed_fields(row)
            problems.append(Problem(
                "changed",
                f"event {event_id} (record_id {record_id}) was changed after checkpoint {checkpoint.sequence}"
                + (f": {', '.join(fields)} differ from the record as signed" if fields else ""),
                event_id, str(record_id), checkpoint.sequence, fields,
            ))
        for event_id, row in sorted(rows.items()):
            problems.append(Problem(
                "inserted",
                f"event {event_id} (record_id {row['record_id']}) is in the range of checkpoint "
                f"{checkpoint.sequence} but was not in it: inserted afterwards",
                event_id, str(row["record_id"]), checkpoint.sequence,
            ))
        covered = max(covered, checkpoint.last_event_id)
        if len(problems) >= max_problems:
            break

    # Events after the last checkpoint are checked against their sealed signed record only.
    uncovered = 0
    for row in _rows(covered, 2**62):
        uncovered += 1
        fields = _changed_fields(row)
        if fields:
            problems.append(Problem(
                "changed",
                f"event {row['id']} (record_id {row['record_id']}, not yet checkpointed): "
                f"{', '.join(fields)} differ from the record as signed",
                row["id"], str(row["record_id"]), None, fields,
            ))
        if len(problems) >= max_problems:
            break
    return Report(
        ok=not problems, checkpoints=len(checkpoints), events_checked=checked,
        events_removed_by_retention=removed_by_retention, events_not_checkpointed=uncovered,
        problems=problems[:max_problems],
    )


def _checkpoint_problems(checkpoint: Checkpoint, previous: Checkpoint | None) -> list[Problem]:
    found = []
    expected_sequence = previous.sequence + 1 if previous else 1
    if checkpoint.sequence != expected_sequence:
        found.append(Problem("checkpoint", (
            f"checkpoint {checkpoint.sequence} follows checkpoint {expected_sequence - 1}: "
            f"checkpoint(s) {expected_sequence}…{checkpoint.sequence - 1} were removed"
        ), checkpoint=checkpoint.sequence))
    statement = checkpoint.statement
    body = canonical_json(statement)
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(checkpoint.key.public_key))
        public.verify(base64.b64decode(checkpoint.signature), body)
    except (InvalidSignature, ValueError):
        found.append(Problem("checkpoint", (
            f"checkpoint {checkpoint.sequence}: its signature does not verify with the control plane key "
            f"{checkpoint.key_id[:16]}…: the checkpoint was altered"
        ), checkpoint=checkpoint.sequence))
    entries = bytes(checkpoint.entries)
    leaves = [leaf_hash(i, d) for i, _, d in unpack_entries(entries)]
    mismatched = [
        name for name, actual in (
            ("entries", hashlib.sha256(entries).hexdigest() != statement.get("entries_sha256")),
            ("merkle_root", merkle_root(leaves) != statement.get("merkle_root")),
            ("columns", (checkpoint.sequence, checkpoint.kind, checkpoint.event_count, checkpoint.first_event_id,
                         checkpoint.last_event_id, checkpoint.merkle_root) != (
                statement.get("sequence"), statement.get("kind"), statement.get("event_count"),
                statement.get("first_event_id"), statement.get("last_event_id"), statement.get("merkle_root"))),
            ("statement_hash", hashlib.sha256(body).hexdigest() != checkpoint.statement_hash),
        ) if actual
    ]
    if mismatched:
        found.append(Problem("checkpoint", (
            f"checkpoint {checkpoint.sequence}: {', '.join(mismatched)} do not match its signed statement"
        ), checkpoint=checkpoint.sequence))
    expected_previous = previous.statement_hash if previous else None
    if previous is not None and statement.get("previous") != expected_previous:
        found.append(Problem("checkpoint", (
            f"checkpoint {checkpoint.sequence} does not chain to checkpoint {previous.sequence}"
        ), checkpoint=checkpoint.sequence))
    return found


def expected_columns(original: dict[str, Any], masked_paths: list[str]) -> dict[str, Any]:
    """What the stored columns of an event must say, derived from the record as signed."""
    payload, _ = records.mask_payload(original["payload"], list(masked_paths or []), frozenset())
    return {
        "record_id": original["record_id"],
        "key_id": original["key_id"],
        "session_id": original["session_id"],
        "seq": original["seq"],
        "kind": original["kind"],
        "time": records.record_time(original),
        "effect": original["payload"].get("effect", "") if original["kind"] == "decision" else "",
        "rule_ids": records.rule_ids(original),
        "payload": payload,
        "prev_hash": original["prev_hash"],
        "record_hash": hashlib.sha256(canonical_json(original)).hexdigest(),
    }


def _changed_fields(row: dict[str, Any]) -> list[str]:
    """Columns of a row that disagree with its sealed, signed original (names only)."""
    try:
        original = parse_jsonl_line(records.unseal(row["sealed_record"]))
    except (InvalidToken, ValueError):
        return ["sealed_record"]
    expected = expected_columns(original, row["masked_paths"])
    actual = dict(row, record_id=str(row["record_id"]))
    return [name for name, value in expected.items() if actual.get(name) != value]
