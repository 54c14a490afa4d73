"""Verifying a stored batch into events or quarantine.

Verification of one batch is exact under crashes: the CPU work (form, key, signature,
masking, sealing) happens outside any transaction, then ONE transaction locks the
batch and the chain heads of its sessions, checks the chains, inserts events and
quarantined records in bulk, moves the heads and marks the batch verified. A worker
killed anywhere before that commit leaves nothing behind; a retry redoes the batch from
its stored body; a retry after the commit finds the batch verified and returns.
"""

from __future__ import annotations

import base64
import binascii
import gc
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import DataError, DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from agents_sdk.records import GENESIS_HASH
from agents_sdk.verify import (
    AGENT_MISMATCH,
    BAD_SIGNATURE,
    BROKEN_CHAIN,
    MALFORMED,
    SEQUENCE_GAP,
    UNKNOWN_KEY,
)
from controlplane.audit import chains, conf, records, sealing, signatures, storage, witness
from controlplane.audit.models import Batch, BatchStatus, QuarantineReason
from controlplane.audit.storage import ChainHead, EventRow
from controlplane.core.signals import audit_batch_stored
from controlplane.identity.models import AgentKey

logger = logging.getLogger(__name__)

REVOKED_KEY = QuarantineReason.REVOKED_KEY.value
REPLAYED = QuarantineReason.REPLAYED.value
UNSTORABLE = QuarantineReason.UNSTORABLE.value

# A process verifying batch N holds the session advisory lock BATCH_CLAIM_LOCK + N ("WB" + id).
BATCH_CLAIM_LOCK = 0x5742 << 48


@dataclass(slots=True)
class _Candidate:
    """A record that passed the checks needing no database state, ready to be chained."""

    position: int
    record: dict[str, Any]
    record_id: str  # canonical UUID text (the form requires it)
    moment: datetime
    record_hash: str
    whole: bytes  # the whole record's canonical JSON: what is hashed and sealed
    sealed: bytes  # `whole`, Fernet-encrypted
    sensitive: bool  # whether an object key of it may be a sensitive one (else masking skips the walk)


@dataclass(slots=True)
class _Rejection:
    position: int
    record: Any
    reason: str
    message: str
    sealed: bytes | None = None  # sealed already (a candidate quarantined by the chain check)


@dataclass
class BatchOutcome:
    batch_id: int
    events: int = 0
    quarantined: int = 0
    already_verified: bool = False
    parked: bool = False
    reasons: dict[str, int] = field(default_factory=dict)


def verify_batch(batch_id: int) -> BatchOutcome | None:
    """Verify a batch after every earlier pending batch of the same agent.

    Batches of one agent are stored in arrival order so a session continued across
    batches is checked in the order it was signed, whichever worker takes which task.
    The signatures are checked first, outside any transaction and while holding only
    this batch's claim, so worker processes verify different batches at once; then each
    earlier pending batch is waited for (its claim is held by the process verifying it)
    or, if no process holds it, verified here; then this batch is chained and stored.
    An earlier batch that keeps failing is parked after `conf.max_batch_attempts()` runs
    (`_start`), so it holds up later batches of its agent for a bounded time only.
    Returns None if the batch is gone (removed by retention).
    """
    batch = Batch.objects.filter(pk=batch_id).values("agent_id", "status").first()
    if batch is None:
        return None
    if batch["status"] != BatchStatus.PENDING:
        return BatchOutcome(batch_id, already_verified=batch["status"] == BatchStatus.VERIFIED,
                            parked=batch["status"] == BatchStatus.PARKED)
    with _claimed(batch_id):
        with _collector_paused():
            loaded = _start(batch_id)
            if isinstance(loaded, BatchOutcome) or loaded is None:
                return loaded
            candidates, rejections = _check_records(loaded)
        earlier = list(
            Batch.objects.filter(agent_id=batch["agent_id"], status=BatchStatus.PENDING, pk__lt=batch_id)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        try:
            for pk in earlier:
                with _claimed(pk):
                    _verify_one(pk)
        except Exception:
            # The earlier batch failed, not this one: its attempt is not counted against this
            # batch (the earlier one is parked after its own attempts, then this one goes on).
            Batch.objects.filter(pk=batch_id, attempts__gt=0).update(attempts=F("attempts") - 1)
            raise
        with _collector_paused():
            return _store(loaded, candidates, rejections)


def _verify_one(batch_id: int) -> BatchOutcome | None:
    """Check and store one batch whose earlier batches are verified (the caller holds its claim)."""
    with _collector_paused():
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
    if batch.status != BatchStatus.PENDING:
        return BatchOutcome(batch_id, already_verified=batch.status == BatchStatus.VERIFIED,
                            parked=batch.status == BatchStatus.PARKED)
    if batch.attempts >= conf.max_batch_attempts():
        return _park(batch)
    Batch.objects.filter(pk=batch_id).update(attempts=F("attempts") + 1, started_at=timezone.now())
    return batch


def _park(batch: Batch) -> BatchOutcome:
    """Stop retrying a batch that failed every run: later batches of its agent go on without
    it, and the alert (an ERROR log line naming the batch) asks a person to look."""
    problem = (
        f"verification started {batch.attempts} times without finishing; parked so that later batches of "
        f"agent {batch.agent.name!r} are not held up. Look at the worker's log for batch {batch.pk}, fix the "
        "cause, then set its status back to pending to verify it again"
    )
    Batch.objects.filter(pk=batch.pk, status=BatchStatus.PENDING).update(status=BatchStatus.PARKED, problem=problem)
    logger.error("ALERT audit batch %s of agent %s parked: %s", batch.pk, batch.agent.name, problem)
    return BatchOutcome(batch.pk, parked=True)


def _store(batch: Batch, candidates: list[_Candidate], rejections: list[_Rejection]) -> BatchOutcome | None:
    """ONE transaction: lock the batch, chain its records against the heads, store them."""
    with transaction.atomic():
        storage.advisory_xact_lock(storage.EVENTS_LOCK, shared=True)
        locked = Batch.objects.select_for_update().filter(pk=batch.pk).values_list("status", flat=True).first()
        if locked is None:
            return None
        if locked != BatchStatus.PENDING:
            return BatchOutcome(batch.pk, already_verified=locked == BatchStatus.VERIFIED,
                                parked=locked == BatchStatus.PARKED)
        try:
            with transaction.atomic():
                outcome = _chain_and_store(batch, list(candidates), list(rejections))
        except (DataError, IntegrityError) as exc:
            # One row the database refuses must not fail the batch forever: store record by
            # record, each in its own savepoint, and quarantine the ones refused.
            logger.warning("audit batch %s: bulk store refused (%s); storing record by record", batch.pk, exc)
            outcome = _chain_and_store(batch, list(candidates), list(rejections), isolated=True)
    logger.info(
        "audit batch %s verified: %s events, %s quarantined %s",
        batch.pk, outcome.events, outcome.quarantined, outcome.reasons or "",
    )
    if outcome.events:
        audit_batch_stored.send(sender=Batch, batch_id=batch.pk)
    return outcome


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while one batch is checked or stored (never
    across batches, so the garbage a pause keeps is one batch's at most).

    A batch allocates tens of thousands of objects that stay alive until it is stored (the
    parsed records, candidates, rows), so each collection the allocations trigger walks them
    again, and a full one walks the worker's whole heap (Django, Celery): about a tenth of
    the worker's CPU per event. None of them form cycles that must be reclaimed before the
    batch ends (refcounting frees them), and a batch is bounded (conf.max_batch_records,
    max_batch_bytes). Restores the previous state: a caller that turned it off keeps it off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


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
    """Form, agent, key valid at the record's time, Ed25519 signature, sealing; no transaction.

    The form is checked here only for a body the API did not check before its 202 (one
    stored before `records.FORM_CHECKED`, or under older rules): the API refuses a batch
    holding any record of the wrong form, so checking it twice would only cost time.
    """
    items, form_checked = records.unseal_batch(batch.body)
    agent_name = batch.agent.name
    keys = {key.key_id: key for key in AgentKey.objects.filter(agent_id=batch.agent_id)}
    # Each key's public half is loaded once per batch, not once per record.
    public = {key_id: signatures.PublicKey(base64.b64decode(key.public_key)) for key_id, key in keys.items()}
    foreign: dict[str, str] | None = None
    seal = sealing.BatchSealer(records.sealer()).seal  # Fernet tokens, one cipher context per batch
    b64decode = binascii.a2b_base64  # the form (checked by the API or below) makes it strict base64
    names_sensitive_key = records.sensitive_key_test(conf.sensitive_keys())
    sha256 = hashlib.sha256
    form_problem = records.form_problem
    # The form (checked by the API or below) makes `time` RFC 3339 with an offset: what
    # records.record_time parses, without its two calls per record.
    record_time = datetime.fromisoformat
    signed_encodings = records.signed_encodings

    candidates: list[_Candidate] = []
    rejections: list[_Rejection] = []
    for position, record in enumerate(items):
        if not form_checked:
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
        moment = record_time(record["time"])
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
        if not public[key_id].verifies(b64decode(record["signature"]), unsigned):
            rejections.append(_Rejection(position, record, BAD_SIGNATURE, (
                f"the signature does not verify with key {key_id[:16]}…: the record was altered or signed with another key"
            )))
            continue
        candidates.append(_Candidate(
            position, record, record["record_id"], moment, sha256(whole).hexdigest(), whole, seal(whole),
            names_sensitive_key(whole),
        ))
    return candidates, rejections


def _chain_and_store(
    batch: Batch, candidates: list[_Candidate], rejections: list[_Rejection], *, isolated: bool = False
) -> BatchOutcome:
    """Inside the batch's transaction: check chains against the heads and store everything.

    `isolated`: insert event by event, each in a savepoint, quarantining what the database
    refuses (and what chains to it) instead of failing the batch.
    """
    now = timezone.now()
    sessions = sorted({c.record["session_id"] for c in candidates})
    heads = storage.lock_heads(batch.agent_id, sessions)
    before = {s: (h.last_seq, h.last_hash, h.last_tool, h.last_event_id) for s, h in heads.items()}

    stored = storage.existing_record_ids(batch.agent_id, [c.record_id for c in candidates])
    linked: dict[str, tuple[str, int, int]] | None = None  # looked up at the first broken link
    head_hashes = {head.last_hash for head in heads.values()}
    sensitive = conf.sensitive_keys()

    accepted: list[tuple[ChainHead, EventRow, _Candidate, tuple[int, str, str]]] = []
    seen_ids: dict[str, int] = {}
    in_batch_hash: dict[str, _Candidate] = {}
    # Records quarantined already (bad signature, key): what chains to them is broken too.
    quarantined_hash: dict[str, int] = {
        h: r.position for r in rejections if (h := chains.hash_or_none(r.record)) is not None
    }
    session_masks: dict[str, list[str]] = {}
    last_intent: dict[str, EventRow] = {}
    for candidate in candidates:
        record = candidate.record
        session_id = record["session_id"]
        head = heads[session_id]
        reason = message = None
        if candidate.record_id in stored:
            event_id, batch_id = stored[candidate.record_id]
            reason, message = REPLAYED, (
                f"record_id {record['record_id']} is already stored as event {event_id} from batch {batch_id}; "
                "not stored twice"
            )
        elif candidate.record_id in seen_ids:
            reason, message = REPLAYED, (
                f"record_id {record['record_id']} appears twice in this batch (first at position "
                f"{seen_ids[candidate.record_id]})"
            )
        elif record["prev_hash"] != head.last_hash:
            if linked is None:
                # Hashes the broken links point to, looked up once: to tell a fork or a splice from a gap.
                linked = storage.events_by_hash(
                    {c.record["prev_hash"] for c in candidates if c.record["prev_hash"] != GENESIS_HASH},
                    exclude=head_hashes,
                )
            reason, message = chains.broken_link(record, head, linked, in_batch_hash, quarantined_hash)
        elif record["seq"] != head.last_seq + 1:
            reason, message = SEQUENCE_GAP, f"expected seq {head.last_seq + 1}, found {record['seq']}"
        if reason is not None:
            rejections.append(_Rejection(candidate.position, record, reason, message, candidate.sealed))
            quarantined_hash[candidate.record_hash] = candidate.position
            continue

        seen_ids[candidate.record_id] = candidate.position
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
                intent.payload_json = None  # encoded again, masked
        masks = session_masks.get(session_id)
        if masks or candidate.sensitive:
            masked_payload, masked_paths = records.mask_payload(payload, masks or [], sensitive)
        else:  # nothing to mask: no pointer applies and no key of the record is a sensitive one
            masked_payload, masked_paths = payload, []
        event = EventRow(
            record_id=candidate.record_id,
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
            # Unmasked (the same object: masking copies on write): its text is in the record's.
            payload_json=records.payload_json(candidate.whole) if masked_payload is payload else None,
        )
        if kind == "intent":
            last_intent[session_id] = event
        in_batch_hash[candidate.record_hash] = candidate
        head.last_hash = candidate.record_hash
        head.last_seq = record["seq"]
        head.moved = True
        accepted.append((head, event, candidate, (head.last_seq, head.last_hash, head.last_tool)))

    if isolated:
        events = _insert_isolated(batch, accepted, before, rejections, now)
    else:
        events = [event for _, event, _, _ in accepted]
        storage.insert_events(batch, events, now)
        storage.insert_rule_hits(events)
        for head, event, _, _ in accepted:
            head.last_event_id = event.pk

    if rejections:
        fernet = records.sealer()
        rows = [
            storage.quarantine_row(
                batch, position=r.position, record=r.record, reason=r.reason, message=r.message, sealed=r.sealed,
                fernet=fernet, now=now,
            )
            for r in rejections
        ]
        if isolated:
            storage.insert_quarantined_one_by_one(rows)
        else:
            storage.insert_quarantined(rows)
    storage.update_heads([head for head in heads.values() if head.moved], now)

    reasons: dict[str, int] = {}
    for rejection in rejections:
        reasons[rejection.reason] = reasons.get(rejection.reason, 0) + 1
    Batch.objects.filter(pk=batch.pk).update(
        status=BatchStatus.VERIFIED, verified_at=now, event_count=len(events), quarantined_count=len(rejections)
    )
    if events:
        witness.append_after_commit(witness.batch_line(batch.pk, (event.pk for event in events)))
    return BatchOutcome(batch.pk, events=len(events), quarantined=len(rejections), reasons=reasons)


def _insert_isolated(
    batch: Batch,
    accepted: list[tuple[ChainHead, EventRow, _Candidate, tuple[int, str, str]]],
    before: dict[str, tuple[int, str, str, int | None]],
    rejections: list[_Rejection],
    now: datetime,
) -> list[EventRow]:
    """Insert events one by one in savepoints; a refused event is quarantined as unstorable,
    the later records of its session as a broken chain, and the session's head stays at
    the last event stored."""
    stored: list[EventRow] = []
    refused_at: dict[str, int] = {}
    last_stored: dict[str, tuple[tuple[int, str, str], int | None]] = {}
    for head, event, candidate, after in accepted:
        session_id = event.session_id
        if session_id in refused_at:
            rejections.append(_Rejection(candidate.position, candidate.record, BROKEN_CHAIN, (
                f"it continues the record at position {refused_at[session_id]} of this batch, "
                "which the database refused"
            ), candidate.sealed))
            continue
        try:
            with transaction.atomic():
                storage.insert_events(batch, [event], now)
                storage.insert_rule_hits([event])
        except (DataError, IntegrityError) as exc:
            refused_at[session_id] = candidate.position
            rejections.append(_Rejection(candidate.position, candidate.record, UNSTORABLE, (
                f"the database refused it: {str(exc).strip()[:300]}"
            ), candidate.sealed))
            continue
        stored.append(event)
        head.last_event_id = event.pk
        last_stored[session_id] = (after, event.pk)
    for head, _, _, _ in accepted:
        if head.session_id in refused_at:
            if head.session_id in last_stored:
                (head.last_seq, head.last_hash, head.last_tool), head.last_event_id = last_stored[head.session_id]
            else:
                head.last_seq, head.last_hash, head.last_tool, head.last_event_id = before[head.session_id]
    return stored
