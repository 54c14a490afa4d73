"""Writes of the audit pipeline: ingest a batch durably, verify it into events or
quarantine, re-enqueue stuck batches, and retention policies.

Verification of one batch is exact under crashes: the CPU work (form, key, signature,
masking, sealing) happens outside any transaction, then ONE transaction locks the
batch and the chain heads of its sessions, checks the chains, inserts events and
quarantined records in bulk, moves the heads and marks the batch verified. A worker
killed anywhere before that commit leaves nothing behind; a retry redoes the batch from
its stored body; a retry after the commit finds the batch verified and returns.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone

from agents_sdk.records import GENESIS_HASH, canonical_json
from agents_sdk.verify import (
    AGENT_MISMATCH,
    BAD_SIGNATURE,
    BROKEN_CHAIN,
    MALFORMED,
    SEQUENCE_GAP,
    SESSION_MISMATCH,
    UNKNOWN_KEY,
)
from controlplane.audit import conf, records
from controlplane.audit.models import (
    AuditEvent,
    Batch,
    BatchStatus,
    QuarantinedRecord,
    QuarantineReason,
    RetentionPolicy,
    SessionHead,
)
from controlplane.changelog.models import ChangeAction
from controlplane.changelog.services import record_change, snapshot
from controlplane.core.exceptions import ConflictError, InvalidInput
from controlplane.identity.models import Agent, AgentKey

logger = logging.getLogger(__name__)

REVOKED_KEY = QuarantineReason.REVOKED_KEY.value
FORKED_CHAIN = QuarantineReason.FORKED_CHAIN.value
REPLAYED = QuarantineReason.REPLAYED.value

# Event inserts hold this PostgreSQL advisory lock shared; the checkpoint job takes it
# exclusively for an instant, so every event id below its high-water mark is committed.
EVENTS_LOCK = 0x57415244_41554454  # "WARDAUDT"
# A process verifying batch N holds the session advisory lock BATCH_CLAIM_LOCK + N ("WB" + id).
BATCH_CLAIM_LOCK = 0x5742 << 48
INSERT_CHUNK = 2000
IN_CHUNK = 5000


# -- ingestion --------------------------------------------------------------------------


def ingest_batch(*, agent: Agent, key_id: str, body: bytes, content_encoding: str = "") -> Batch:
    """Store a batch of records as received and enqueue its verification after commit.

    The body is inflated and parsed only to refuse what is not a batch (InvalidInput,
    records.BatchTooLarge); each record is judged later by the worker, so one bad
    record never costs the others their place in the log.
    """
    data = records.inflate(body, content_encoding, limit=conf.max_batch_bytes())
    parsed = records.parse_batch(data)
    with transaction.atomic():
        batch = Batch.objects.create(
            agent=agent, key_id=key_id, body=data, record_count=len(parsed), byte_count=len(data)
        )
        # robust: a broker outage must not turn a durable 202 into a 500; the
        # requeue job picks the batch up.
        transaction.on_commit(lambda: enqueue_verification(batch.pk), robust=True)
    return batch


def enqueue_verification(batch_id: int) -> None:
    from controlplane.audit.tasks import verify_batch

    verify_batch.apply_async((batch_id,), queue=conf.verify_queue())


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
        enqueue_verification(batch_id)
    return stale


# -- verification -----------------------------------------------------------------------


@dataclass(slots=True)
class _Candidate:
    """A record that passed the checks needing no database state, ready to be chained."""

    position: int
    record: dict[str, Any]
    record_uuid: uuid.UUID
    moment: datetime
    record_hash: str
    sealed: bytes  # the whole record as signed (its canonical JSON), Fernet-encrypted


@dataclass(slots=True)
class _Rejection:
    position: int
    record: Any
    reason: str
    message: str
    sealed: bytes | None = None  # sealed already (a candidate quarantined by the chain check)


@dataclass(slots=True)
class _Event:
    """The columns of one event row to insert (a model instance costs more than the row)."""

    record_id: uuid.UUID
    key_id: str
    session_id: str
    seq: int
    kind: str
    time: datetime
    tool: str
    effect: str
    rule_ids: list[str]
    payload: Any
    masked_paths: list[str]
    prev_hash: str
    record_hash: str
    sealed_record: bytes
    pk: int | None = None


@dataclass(slots=True)
class _Head:
    """A session's chain head, locked for the batch's transaction."""

    pk: int
    session_id: str
    last_seq: int
    last_hash: str
    last_event_id: int | None
    last_tool: str
    moved: bool = False


@dataclass
class BatchOutcome:
    batch_id: int
    events: int = 0
    quarantined: int = 0
    already_verified: bool = False
    reasons: dict[str, int] = field(default_factory=dict)


def verify_batch(batch_id: int) -> BatchOutcome | None:
    """Verify a batch after every earlier pending batch of the same agent.

    Batches of one agent are stored in arrival order so a session continued across
    batches is checked in the order it was signed, whichever worker takes which task.
    The signatures are checked first, outside any transaction and while holding only
    this batch's claim, so worker processes verify different batches at once; then each
    earlier pending batch is waited for (its claim is held by the process verifying it)
    or, if no process holds it, verified here; then this batch is chained and stored.
    Returns None if the batch is gone (removed by retention).
    """
    batch = Batch.objects.filter(pk=batch_id).values("agent_id", "status").first()
    if batch is None:
        return None
    if batch["status"] == BatchStatus.VERIFIED:
        return BatchOutcome(batch_id, already_verified=True)
    with _claimed(batch_id):
        loaded = _start(batch_id)
        if isinstance(loaded, BatchOutcome) or loaded is None:
            return loaded
        candidates, rejections = _check_records(loaded)
        earlier = list(
            Batch.objects.filter(agent_id=batch["agent_id"], status=BatchStatus.PENDING, pk__lt=batch_id)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        for pk in earlier:
            with _claimed(pk):
                _verify_one(pk)
        return _store(loaded, candidates, rejections)


def _verify_one(batch_id: int) -> BatchOutcome | None:
    """Check and store one batch whose earlier batches are verified (the caller holds its claim)."""
    batch = _start(batch_id)
    if isinstance(batch, BatchOutcome) or batch is None:
        return batch
    candidates, rejections = _check_records(batch)
    return _store(batch, candidates, rejections)


def _start(batch_id: int) -> Batch | BatchOutcome | None:
    """The batch to verify, its attempt counted; or the outcome if it is done, None if gone."""
    batch = Batch.objects.select_related("agent").filter(pk=batch_id).first()
    if batch is None:
        return None
    if batch.status == BatchStatus.VERIFIED:
        return BatchOutcome(batch_id, already_verified=True)
    Batch.objects.filter(pk=batch_id).update(attempts=F("attempts") + 1, started_at=timezone.now())
    return batch


def _store(batch: Batch, candidates: list[_Candidate], rejections: list[_Rejection]) -> BatchOutcome | None:
    """ONE transaction: lock the batch, chain its records against the heads, store them."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [EVENTS_LOCK])
        locked = Batch.objects.select_for_update().filter(pk=batch.pk).values_list("status", flat=True).first()
        if locked is None:
            return None
        if locked == BatchStatus.VERIFIED:
            return BatchOutcome(batch.pk, already_verified=True)
        outcome = _chain_and_store(batch, candidates, rejections)
    logger.info(
        "audit batch %s verified: %s events, %s quarantined %s",
        batch.pk, outcome.events, outcome.quarantined, outcome.reasons or "",
    )
    return outcome


@contextmanager
def _claimed(batch_id: int) -> Iterator[None]:
    """Hold the batch's claim while verifying it: a PostgreSQL session advisory lock.

    Another process asking for the same batch waits until the holder is done, then finds
    it verified. Only coordination: correctness rests on the batch's transaction (row
    lock, status check). A killed worker's claim goes with its connection. No-op elsewhere.
    """
    if connection.vendor != "postgresql":
        yield
        return
    key = BATCH_CLAIM_LOCK + batch_id
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [key])
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        except DatabaseError:
            # A broken connection took the lock with it; otherwise do not keep a claim.
            if not connection.in_atomic_block:
                connection.close()


def _check_records(batch: Batch) -> tuple[list[_Candidate], list[_Rejection]]:
    """Form, agent, key valid at the record's time, Ed25519 signature, sealing; no transaction."""
    items = records.parse_batch(bytes(batch.body), max_records=2**31)
    agent_name = batch.agent.name
    keys = {key.key_id: key for key in AgentKey.objects.filter(agent_id=batch.agent_id)}
    # Each key's public half is loaded once per batch, not once per record.
    public = {key_id: Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key)) for key_id, key in keys.items()}
    foreign: dict[str, str] | None = None
    seal = records.sealer().encrypt
    b64decode = base64.b64decode
    sha256 = hashlib.sha256
    form_problem = records.form_problem
    record_time = records.record_time
    signed_encodings = records.signed_encodings

    candidates: list[_Candidate] = []
    rejections: list[_Rejection] = []
    for position, record in enumerate(items):
        problem = form_problem(record)
        if problem:
            rejections.append(_Rejection(position, record, MALFORMED, problem))
            continue
        key_id = record["key_id"]
        key = keys.get(key_id)
        if key is None:
            if foreign is None:
                others = {r["key_id"] for r in items if isinstance(r, dict) and isinstance(r.get("key_id"), str)}
                foreign = dict(
                    AgentKey.objects.filter(key_id__in=others - keys.keys()).values_list("key_id", "agent__name")
                )
            owner = foreign.get(key_id)
            if owner is not None:
                rejections.append(_Rejection(position, record, AGENT_MISMATCH, (
                    f"signed with key {key_id[:16]}… of agent {owner!r}, sent by agent {agent_name!r}"
                )))
            else:
                rejections.append(_Rejection(position, record, UNKNOWN_KEY, (
                    f"key {key_id[:16]}… is not registered for agent {agent_name!r}"
                )))
            continue
        if record["agent"] != agent_name:
            rejections.append(_Rejection(position, record, AGENT_MISMATCH, (
                f"names agent {record['agent']!r} but was sent by and signed with a key of {agent_name!r}"
            )))
            continue
        moment = record_time(record)
        # The same rule as identity.selectors.key_valid_at, applied to the keys loaded once.
        if key.created_at > moment or (key.revoked_at is not None and key.revoked_at <= moment):
            when = (
                f"revoked at {key.revoked_at.isoformat()}" if key.revoked_at is not None and key.revoked_at <= moment
                else f"registered only at {key.created_at.isoformat()}"
            )
            rejections.append(_Rejection(position, record, REVOKED_KEY, (
                f"signed at {record['time']} with key {key_id[:16]}…, which was not valid then: {when}"
            )))
            continue
        try:
            # One canonical encoding gives the signed bytes, the hash and the sealed original.
            unsigned, whole = signed_encodings(record)
        except ValueError as exc:  # CanonicalJSONError: an unpaired surrogate, 1e999
            rejections.append(_Rejection(position, record, MALFORMED, str(exc)))
            continue
        try:
            public[key_id].verify(b64decode(record["signature"]), unsigned)
        except InvalidSignature:
            rejections.append(_Rejection(position, record, BAD_SIGNATURE, (
                f"the signature does not verify with key {key_id[:16]}…: the record was altered or signed with another key"
            )))
            continue
        candidates.append(_Candidate(
            position, record, uuid.UUID(record["record_id"]), moment, sha256(whole).hexdigest(), seal(whole)
        ))
    return candidates, rejections


def _chain_and_store(batch: Batch, candidates: list[_Candidate], rejections: list[_Rejection]) -> BatchOutcome:
    """Inside the batch's transaction: check chains against the heads and store everything."""
    now = timezone.now()
    sessions = sorted({c.record["session_id"] for c in candidates})
    heads = _lock_heads(batch.agent_id, sessions)

    stored = _existing_record_ids([c.record_uuid for c in candidates])
    linked: dict[str, tuple[str, int, int]] | None = None  # looked up at the first broken link
    head_hashes = {head.last_hash for head in heads.values()}
    sensitive = conf.sensitive_keys()

    accepted: list[tuple[_Head, _Event]] = []
    seen_ids: dict[uuid.UUID, int] = {}
    in_batch_hash: dict[str, _Candidate] = {}
    # Records quarantined already (bad signature, key): what chains to them is broken too.
    quarantined_hash: dict[str, int] = {
        h: r.position for r in rejections if (h := _hash_or_none(r.record)) is not None
    }
    session_masks: dict[str, list[str]] = {}
    last_intent: dict[str, _Event] = {}
    for candidate in candidates:
        record = candidate.record
        session_id = record["session_id"]
        head = heads[session_id]
        reason = message = None
        if candidate.record_uuid in stored:
            event_id, batch_id = stored[candidate.record_uuid]
            reason, message = REPLAYED, (
                f"record_id {record['record_id']} is already stored as event {event_id} from batch {batch_id}; "
                "not stored twice"
            )
        elif candidate.record_uuid in seen_ids:
            reason, message = REPLAYED, (
                f"record_id {record['record_id']} appears twice in this batch (first at position "
                f"{seen_ids[candidate.record_uuid]})"
            )
        elif record["prev_hash"] != head.last_hash:
            if linked is None:
                # Hashes the broken links point to, looked up once: to tell a fork or a splice from a gap.
                linked = _events_by_hash(
                    {c.record["prev_hash"] for c in candidates if c.record["prev_hash"] != GENESIS_HASH},
                    exclude=head_hashes,
                )
            reason, message = _broken_link(record, head, linked, in_batch_hash, quarantined_hash)
        elif record["seq"] != head.last_seq + 1:
            reason, message = SEQUENCE_GAP, f"expected seq {head.last_seq + 1}, found {record['seq']}"
        if reason is not None:
            rejections.append(_Rejection(candidate.position, record, reason, message, candidate.sealed))
            quarantined_hash[candidate.record_hash] = candidate.position
            continue

        seen_ids[candidate.record_uuid] = candidate.position
        kind = record["kind"]
        payload = record["payload"]
        if kind == "intent":
            head.last_tool = payload["tool"][:200]
            session_masks.pop(session_id, None)
        pointers = records.mask_pointers(record) if kind == "decision" else []
        if pointers:
            session_masks[session_id] = pointers
            # The decision's mask addresses the intent it decided on, if it is still unstored.
            intent = last_intent.get(session_id)
            if intent is not None:
                intent.payload, intent.masked_paths = records.mask_payload(intent.payload, pointers, sensitive)
        masked_payload, masked_paths = records.mask_payload(payload, session_masks.get(session_id, []), sensitive)
        event = _Event(
            record_id=candidate.record_uuid,
            key_id=record["key_id"],
            session_id=session_id,
            seq=record["seq"],
            kind=kind,
            time=candidate.moment,
            tool=head.last_tool,
            effect=payload["effect"] if kind == "decision" else "",
            rule_ids=records.rule_ids(record),
            payload=masked_payload,
            masked_paths=masked_paths,
            prev_hash=record["prev_hash"],
            record_hash=candidate.record_hash,
            sealed_record=candidate.sealed,
        )
        if kind == "intent":
            last_intent[session_id] = event
        accepted.append((head, event))
        in_batch_hash[candidate.record_hash] = candidate
        head.last_hash = candidate.record_hash
        head.last_seq = record["seq"]
        head.moved = True

    events = [event for _, event in accepted]
    _insert_events(batch, events, now)
    for head, event in accepted:
        head.last_event_id = event.pk

    if rejections:
        fernet = records.sealer()
        quarantine = [_quarantine_row(batch, rejection, fernet, now) for rejection in rejections]
        for start in range(0, len(quarantine), INSERT_CHUNK):
            QuarantinedRecord.objects.bulk_create(quarantine[start:start + INSERT_CHUNK], ignore_conflicts=True)
    _update_heads([head for head in heads.values() if head.moved], now)

    reasons: dict[str, int] = {}
    for rejection in rejections:
        reasons[rejection.reason] = reasons.get(rejection.reason, 0) + 1
    Batch.objects.filter(pk=batch.pk).update(
        status=BatchStatus.VERIFIED, verified_at=now, event_count=len(events), quarantined_count=len(rejections)
    )
    return BatchOutcome(batch.pk, events=len(events), quarantined=len(rejections), reasons=reasons)


_COPY_COLUMNS = (
    "id", "record_id", "agent_id", "key_id", "session_id", "seq", "kind", "time", "tool", "effect", "rule_ids",
    "payload", "masked_paths", "prev_hash", "record_hash", "sealed_record", "batch_id", "stored_at",
)


def _insert_events(batch: Batch, events: list[_Event], now: datetime) -> None:
    """Insert events in bulk. On PostgreSQL: ids drawn from the sequence in one query, rows
    streamed with COPY (an INSERT of thousands of rows spends most of its time building SQL),
    JSON columns written as text by the canonical encoder (the server parses jsonb)."""
    if not events:
        return
    if connection.vendor != "postgresql":
        rows = [
            AuditEvent(
                record_id=e.record_id, agent_id=batch.agent_id, key_id=e.key_id, session_id=e.session_id, seq=e.seq,
                kind=e.kind, time=e.time, tool=e.tool, effect=e.effect, rule_ids=e.rule_ids, payload=e.payload,
                masked_paths=e.masked_paths, prev_hash=e.prev_hash, record_hash=e.record_hash,
                sealed_record=e.sealed_record, batch_id=batch.pk, stored_at=now,
            )
            for e in events
        ]
        for start in range(0, len(rows), INSERT_CHUNK):
            AuditEvent.objects.bulk_create(rows[start:start + INSERT_CHUNK])
        for event, row in zip(events, rows, strict=True):
            event.pk = row.pk
        return
    table = AuditEvent._meta.db_table
    agent_id, batch_id = batch.agent_id, batch.pk
    text = records.json_text
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, len(events)]
        )
        for event, (event_id,) in zip(events, cursor.fetchall(), strict=True):
            event.pk = event_id
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw.copy(f"COPY {table} ({', '.join(_COPY_COLUMNS)}) FROM STDIN") as copy:
            write_row = copy.write_row
            for e in events:
                write_row((
                    e.pk, e.record_id, agent_id, e.key_id, e.session_id, e.seq, e.kind, e.time, e.tool, e.effect,
                    text(e.rule_ids), text(e.payload), text(e.masked_paths), e.prev_hash, e.record_hash,
                    e.sealed_record, batch_id, now,
                ))


def _lock_heads(agent_id, sessions: list[str]) -> dict[str, _Head]:
    """The chain heads of these sessions, created at genesis if new, locked in a fixed order."""
    heads: dict[str, _Head] = {}
    if connection.vendor != "postgresql":
        for start in range(0, len(sessions), IN_CHUNK):
            chunk = sessions[start:start + IN_CHUNK]
            SessionHead.objects.bulk_create(
                [SessionHead(agent_id=agent_id, session_id=s, last_hash=GENESIS_HASH) for s in chunk],
                ignore_conflicts=True,
            )
            rows = (
                SessionHead.objects.select_for_update().filter(agent_id=agent_id, session_id__in=chunk)
                .order_by("session_id")
                .values_list("pk", "session_id", "last_seq", "last_hash", "last_event_id", "last_tool")
            )
            heads.update((row[1], _Head(*row)) for row in rows)
        return heads
    table = SessionHead._meta.db_table
    with connection.cursor() as cursor:
        for start in range(0, len(sessions), IN_CHUNK):
            chunk = sessions[start:start + IN_CHUNK]
            # One array parameter, not thousands of placeholders.
            cursor.execute(
                f"INSERT INTO {table} (agent_id, session_id, last_seq, last_hash, last_tool, updated_at) "
                "SELECT %s, s, -1, %s, '', %s FROM unnest(%s::text[]) AS s ON CONFLICT DO NOTHING",
                [agent_id, GENESIS_HASH, timezone.now(), chunk],
            )
            cursor.execute(
                f"SELECT id, session_id, last_seq, last_hash, last_event_id, last_tool FROM {table} "
                "WHERE agent_id = %s AND session_id = ANY(%s::text[]) ORDER BY session_id FOR UPDATE",
                [agent_id, chunk],
            )
            heads.update((row[1], _Head(*row)) for row in cursor.fetchall())
    return heads


def _update_heads(heads: list[_Head], now: datetime) -> None:
    """Move the chain heads. On PostgreSQL one UPDATE … FROM unnest(arrays): bulk_update's
    CASE WHEN per row and column costs PostgreSQL O(rows²) and Django seconds to build."""
    if not heads:
        return
    if connection.vendor != "postgresql":
        SessionHead.objects.bulk_update(
            [
                SessionHead(pk=h.pk, last_seq=h.last_seq, last_hash=h.last_hash, last_event_id=h.last_event_id,
                            last_tool=h.last_tool, updated_at=now)
                for h in heads
            ],
            ["last_seq", "last_hash", "last_event_id", "last_tool", "updated_at"],
        )
        return
    table = SessionHead._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS h SET last_seq = v.last_seq, last_hash = v.last_hash, "
            "last_event_id = v.last_event_id, last_tool = v.last_tool, updated_at = %s "
            "FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::bigint[], %s::text[]) "
            "AS v(id, last_seq, last_hash, last_event_id, last_tool) WHERE h.id = v.id",
            [
                now,
                [h.pk for h in heads],
                [h.last_seq for h in heads],
                [h.last_hash for h in heads],
                [h.last_event_id for h in heads],
                [h.last_tool for h in heads],
            ],
        )


def _existing_record_ids(ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int]]:
    found: dict[uuid.UUID, tuple[int, int]] = {}
    if not ids:
        return found
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT record_id, id, batch_id FROM {AuditEvent._meta.db_table} WHERE record_id = ANY(%s::uuid[])",
                [ids],
            )
            return {rid: (eid, bid) for rid, eid, bid in cursor.fetchall()}
    for start in range(0, len(ids), IN_CHUNK):
        rows = AuditEvent.objects.filter(record_id__in=ids[start:start + IN_CHUNK]).values_list(
            "record_id", "id", "batch_id"
        )
        found.update((rid, (eid, bid)) for rid, eid, bid in rows)
    return found


def _events_by_hash(hashes: set[str], *, exclude: set[str]) -> dict[str, tuple[str, int, int]]:
    """{record_hash: (session_id, seq, event id)} of stored events, for the hashes chains point to."""
    wanted = list(hashes - exclude)
    found: dict[str, tuple[str, int, int]] = {}
    if not wanted:
        return found
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT record_hash, session_id, seq, id FROM {AuditEvent._meta.db_table} "
                "WHERE record_hash = ANY(%s::text[])",
                [wanted],
            )
            return {h: (sess, q, i) for h, sess, q, i in cursor.fetchall()}
    for start in range(0, len(wanted), IN_CHUNK):
        rows = AuditEvent.objects.filter(record_hash__in=wanted[start:start + IN_CHUNK]).values_list(
            "record_hash", "session_id", "seq", "id"
        )
        found.update((h, (s, q, i)) for h, s, q, i in rows)
    return found


def _broken_link(record, head, linked, in_batch_hash, quarantined_hash) -> tuple[str, str]:
    prev = record["prev_hash"]
    session_id = record["session_id"]
    if prev == GENESIS_HASH:
        return FORKED_CHAIN, (
            f"it starts session {session_id!r} again at the genesis hash (seq {record['seq']}), but the session "
            f"already has verified records up to seq {head.last_seq}: a second chain under the same session id"
        )
    if prev in quarantined_hash:
        return BROKEN_CHAIN, (
            f"it continues the record at position {quarantined_hash[prev]} of this batch, which was quarantined"
        )
    target = linked.get(prev)
    if target is None and prev in in_batch_hash:
        other = in_batch_hash[prev].record
        target = (other["session_id"], other["seq"], None)
    if target is not None:
        other_session, other_seq, event_id = target
        where = f"event {event_id}" if event_id else "an earlier record of this batch"
        if other_session != session_id:
            return SESSION_MISMATCH, (
                f"its prev_hash is the hash of {where} (seq {other_seq}) of session {other_session!r}, "
                "not of a record of its own session: it was spliced in"
            )
        return FORKED_CHAIN, (
            f"its prev_hash points to seq {other_seq} ({where}), but the session already continues after it "
            f"up to seq {head.last_seq}: a second branch of the chain (a fork or a replay)"
        )
    if head.last_seq < 0:
        return BROKEN_CHAIN, (
            f"it is the first record of session {session_id!r} received (seq {record['seq']}) but its prev_hash "
            "is not the genesis hash: the session's earlier records are missing"
        )
    message = f"its prev_hash does not match the session's last verified record (seq {head.last_seq})"
    if record["seq"] > head.last_seq + 1:
        message += f"; seq jumps from {head.last_seq} to {record['seq']}, so records are missing"
    return BROKEN_CHAIN, message


def _hash_or_none(record: Any) -> str | None:
    if not isinstance(record, dict):
        return None
    try:
        return hashlib.sha256(canonical_json(record)).hexdigest()
    except ValueError:
        return None


def _quarantine_row(batch: Batch, rejection: _Rejection, fernet, now) -> QuarantinedRecord:
    record = rejection.record

    def text(name: str, limit: int = 200) -> str:
        value = record.get(name) if isinstance(record, dict) else None
        return value[:limit] if isinstance(value, str) else ""

    seq = record.get("seq") if isinstance(record, dict) else None
    moment = records.record_time(record) if isinstance(record, dict) and isinstance(record.get("time"), str) else None
    if rejection.sealed is not None:
        sealed = rejection.sealed  # the candidate's canonical JSON, sealed in the check
    else:
        try:
            original = canonical_json(record)
        except ValueError:
            original = json.dumps(record, sort_keys=True, ensure_ascii=True).encode()
        sealed = fernet.encrypt(original)
    return QuarantinedRecord(
        batch_id=batch.pk,
        position=rejection.position,
        agent_id=batch.agent_id,
        reason=rejection.reason,
        message=rejection.message,
        record_id=text("record_id"),
        session_id=text("session_id"),
        seq=seq if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < 2**63 else None,
        key_id=text("key_id"),
        time=moment,
        raw=_json_safe(records.mask_raw(record)),
        sealed_record=sealed,
        quarantined_at=now,
    )


def _json_safe(value: Any) -> Any:
    # An unpaired surrogate cannot be stored as JSON text, nor U+0000 in PostgreSQL's jsonb:
    # the shown copy replaces them, the sealed copy keeps the record exactly.
    try:
        canonical_json(value)
        safe = value
    except ValueError:
        safe = json.loads(json.dumps(value, ensure_ascii=True).encode().decode("utf-8", "replace"))
    if records.contains_nul(safe):
        safe = json.loads(json.dumps(safe).replace("\\u0000", "\\ufffd"))
    return safe


# -- retention policies -----------------------------------------------------------------


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


def retention_days_by_agent(agent_ids: Iterable) -> dict:
    """Days to keep each agent's events: its own policy, else the longest of its environments', else the default."""
    policies = list(RetentionPolicy.objects.all())
    per_agent = {p.agent_id: p.days for p in policies if p.agent_id}
    per_env = {p.environment: p.days for p in policies if not p.agent_id}
    default = conf.retention_days()
    result = {}
    for agent_id, environments in Agent.objects.filter(pk__in=list(agent_ids)).values_list("pk", "environments"):
        if agent_id in per_agent:
            result[agent_id] = per_agent[agent_id]
            continue
        env_days = [per_env[e] for e in environments or [] if e in per_env]
        result[agent_id] = max(env_days) if env_days else default
    return result
