"""How audit rows reach PostgreSQL: the event columns, bulk inserts by COPY, chain heads
locked and moved with array parameters, lookups by record id or hash, and the advisory
locks that order inserts against checkpoints.

Every function that forks on `connection.vendor` lives here: PostgreSQL gets the fast
path, SQLite (the embedded default) the ORM's.
"""

from __future__ import annotations

import json
import uuid
from binascii import hexlify
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet
from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from agents_sdk.records import GENESIS_HASH, canonical_json
from controlplane.audit import copy_text, partitions, records
from controlplane.audit.models import AuditEvent, Batch, EventRule, QuarantinedRecord, SessionHead

# Event inserts hold this PostgreSQL advisory lock shared; the checkpoint job takes it
# exclusively for an instant, so every event id below its high-water mark is committed.
EVENTS_LOCK = 0x57415244_41554454  # "WARDAUDT"
# Checkpoint writers (events and retention) hold it exclusively: one chain of checkpoints.
CHECKPOINT_LOCK = 0x57415244_43484B50  # "WARDCHKP"
INSERT_CHUNK = 2000
IN_CHUNK = 5000
READ_CHUNK = 5000

# The stored columns of an event, in COPY order; checkpoints hash exactly these.
EVENT_COLUMNS = (
    "id", "record_id", "agent_id", "key_id", "session_id", "seq", "kind", "time", "tool", "effect",
    "rule_ids", "payload", "masked_paths", "prev_hash", "record_hash", "sealed_record", "batch_id", "stored_at",
)


@dataclass(slots=True)
class EventRow:
    """The columns of one event row to insert (a model instance costs more than the row)."""

    record_id: uuid.UUID | str  # a str in canonical UUID form (the form check requires it)
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
    # The canonical JSON of `payload` while it is the payload as signed (sliced from the
    # record's encoding, `records.payload_json`); None once masking replaced it: encode it.
    payload_json: bytes | None = None


@dataclass(slots=True)
class ChainHead:
    """A session's chain head, locked for the batch's transaction."""

    pk: int
    session_id: str
    last_seq: int
    last_hash: str
    last_event_id: int | None
    last_tool: str
    moved: bool = False


def advisory_xact_lock(key: int, *, shared: bool = False) -> None:
    """Take a transaction-scoped PostgreSQL advisory lock (no-op elsewhere)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT pg_advisory_xact_lock{'_shared' if shared else ''}(%s)", [key])


def events_between(id_after: int, id_upto: int) -> Iterator[dict[str, Any]]:
    """Events with id in (id_after, id_upto], in id order, as {column: value}, read in chunks."""
    last = id_after
    while True:
        chunk = list(
            AuditEvent.objects.filter(id__gt=last, id__lte=id_upto).order_by("id").values(*EVENT_COLUMNS)[:READ_CHUNK]
        )
        if not chunk:
            return
        yield from chunk
        last = chunk[-1]["id"]


def insert_events(batch: Batch, events: list[EventRow], now: datetime) -> None:
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
    with connection.cursor() as cursor:
        # The ids as one text value: a row per id costs the client more to read than to draw.
        cursor.execute(
            "SELECT string_agg(nextval(pg_get_serial_sequence(%s, 'id'))::text, ',') FROM generate_series(1, %s)",
            [table, len(events)],
        )
        for event, event_id in zip(events, map(int, cursor.fetchone()[0].split(",")), strict=True):
            event.pk = event_id
        data = event_copy_rows(events, agent_id=batch.agent_id, batch_id=batch.pk, now=now)
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        # wrap_database_errors: psycopg's errors raised as Django's (DataError, IntegrityError…).
        with connection.wrap_database_errors, raw.copy(f"COPY {table} ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
            copy.write(data)


def event_copy_rows(events: list[EventRow], *, agent_id, batch_id: int, now: datetime) -> bytes:
    """The events (their `pk` set) as COPY text rows in EVENT_COLUMNS order, built directly:
    psycopg's `write_row` finds a dumper per value, which cost more than the rest of the store.
    Raises DataError for U+0000 in a text value, as `write_row` does."""
    text, json_bytes, plain, literal_bytea = copy_text.text, copy_text.json_bytes, copy_text.plain, copy_text.literal_bytea
    encode_json = records.json_text
    agent, tail = str(agent_id), f"\t{batch_id}\t{now.isoformat()}\n".encode()
    parts: list[bytes] = []  # every row's pieces, joined once
    add = parts.extend
    for e in events:
        payload = e.payload_json if e.payload_json is not None else encode_json(e.payload).encode()
        key_id, session_id, kind, tool, effect, prev_hash, record_hash = (
            e.key_id, e.session_id, e.kind, e.tool, e.effect, e.prev_hash, e.record_hash
        )
        if not plain(f"{key_id}{session_id}{kind}{tool}{effect}{prev_hash}{record_hash}"):  # one scan for seven
            key_id, session_id, kind, tool, effect, prev_hash, record_hash = map(
                text, (key_id, session_id, kind, tool, effect, prev_hash, record_hash)
            )
        rule_ids = "[]" if not e.rule_ids else text(encode_json(e.rule_ids))
        masked_paths = "[]" if not e.masked_paths else text(encode_json(e.masked_paths))
        sealed = e.sealed_record
        if not literal_bytea(sealed):
            # bytea in hex form, its backslash escaped for COPY (copy_text.bytea), made as bytes
            sealed = b"\\\\x" + hexlify(sealed)
        add((
            f"{e.pk}\t{e.record_id}\t{agent}\t{key_id}\t{session_id}\t{e.seq}\t{kind}\t{e.time.isoformat()}\t"
            f"{tool}\t{effect}\t{rule_ids}\t".encode(),
            json_bytes(payload),
            f"\t{masked_paths}\t{prev_hash}\t{record_hash}\t".encode(),
            sealed,
            tail,
        ))
    return b"".join(parts)


def lock_heads(agent_id, sessions: list[str]) -> dict[str, ChainHead]:
    """The chain heads of these sessions, created at genesis if new, locked in a fixed order."""
    heads: dict[str, ChainHead] = {}
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
            heads.update((row[1], ChainHead(*row)) for row in rows)
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
            heads.update((row[1], ChainHead(*row)) for row in cursor.fetchall())
    return heads


def update_heads(heads: list[ChainHead], now: datetime) -> None:
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


def existing_record_ids(agent_id, ids: list[str]) -> dict[str, tuple[int, int]]:
    """{record_id: (event id, batch id)} of the agent's stored events among `ids`, canonical
    UUID text (record ids are unique per agent: another agent's id never counts)."""
    found: dict[str, tuple[int, int]] = {}
    if not ids:
        return found
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # One array literal: canonical UUIDs need no quoting, and psycopg's list dumper
            # costs microseconds per element.
            cursor.execute(
                f"SELECT record_id::text, id, batch_id FROM {AuditEvent._meta.db_table} "
                "WHERE agent_id = %s AND record_id = ANY(%s::uuid[])",
                [agent_id, "{" + ",".join(map(str, ids)) + "}"],
            )
            return {rid: (eid, bid) for rid, eid, bid in cursor.fetchall()}
    for start in range(0, len(ids), IN_CHUNK):
        rows = AuditEvent.objects.filter(agent_id=agent_id, record_id__in=ids[start:start + IN_CHUNK]).values_list(
            "record_id", "id", "batch_id"
        )
        found.update((str(rid), (eid, bid)) for rid, eid, bid in rows)
    return found


def events_by_hash(hashes: set[str], *, exclude: set[str]) -> dict[str, tuple[str, int, int]]:
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


def quarantine_row(
    batch: Batch, *, position: int, record: Any, reason: str, message: str, sealed: bytes | None,
    fernet: Fernet, now: datetime,
) -> QuarantinedRecord:
    """The quarantine row of a record the pipeline refused; `sealed` if it was sealed already."""

    def text(name: str, limit: int = 200) -> str:
        value = record.get(name) if isinstance(record, dict) else None
        return value[:limit] if isinstance(value, str) else ""

    seq = record.get("seq") if isinstance(record, dict) else None
    moment = records.record_time(record) if isinstance(record, dict) and isinstance(record.get("time"), str) else None
    if sealed is None:
        try:
            original = canonical_json(record)
        except ValueError:
            original = json.dumps(record, sort_keys=True, ensure_ascii=True).encode()
        sealed = fernet.encrypt(original)
    return QuarantinedRecord(
        batch_id=batch.pk,
        position=position,
        agent_id=batch.agent_id,
        reason=reason,
        message=message,
        record_id=text("record_id"),
        session_id=text("session_id"),
        seq=seq if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < 2**63 else None,
        key_id=text("key_id"),
        time=moment,
        raw=json_safe(records.mask_raw(record)),
        sealed_record=sealed,
        quarantined_at=now,
    )


def insert_quarantined(rows: list[QuarantinedRecord]) -> None:
    for start in range(0, len(rows), INSERT_CHUNK):
        QuarantinedRecord.objects.bulk_create(rows[start:start + INSERT_CHUNK], ignore_conflicts=True)


def insert_quarantined_one_by_one(rows: list[QuarantinedRecord]) -> None:
    """Insert each row in a savepoint; a row refused as it is is kept without its shown copy
    (the sealed original stays), so the quarantine never fails the batch."""
    for row in rows:
        try:
            with transaction.atomic():
                QuarantinedRecord.objects.bulk_create([row], ignore_conflicts=True)
        except (DataError, IntegrityError):
            row.raw = None
            row.record_id = row.session_id = row.key_id = ""
            with transaction.atomic():
                QuarantinedRecord.objects.bulk_create([row], ignore_conflicts=True)


def delete_expired(*, event_ids: list[int], quarantined_ids: list[int], batch_ids: list[int]) -> tuple[int, int, int]:
    """Remove expired rows: (events, quarantined records, batches) removed.

    On PostgreSQL only `warden_audit_retention_delete` can (migration 0004): it runs as the
    role the append-only triggers let delete, refuses uncheckpointed events, and removes a
    batch only once nothing refers to it. Elsewhere the same, with the ORM.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT warden_audit_retention_delete(%s::bigint[], %s::bigint[], %s::bigint[])",
                [event_ids, quarantined_ids, batch_ids],
            )
            events, quarantined, batches = cursor.fetchone()[0]
            return events, quarantined, batches
    quarantined = QuarantinedRecord.objects.filter(pk__in=quarantined_ids).delete()[0]
    events = AuditEvent.objects.filter(pk__in=event_ids).delete()[0]
    batches = Batch.objects.filter(pk__in=batch_ids).exclude(
        pk__in=AuditEvent.objects.values("batch_id")
    ).exclude(pk__in=QuarantinedRecord.objects.values("batch_id")).delete()[0]
    return events, quarantined, batches


def json_safe(value: Any) -> Any:
    """`value` as PostgreSQL's jsonb can hold it: unpaired surrogates and U+0000 replaced.

    The shown copy replaces them; the sealed copy keeps the record exactly.
    """
    try:
        canonical_json(value)
        safe = value
    except ValueError:
        safe = json.loads(json.dumps(value, ensure_ascii=True).encode().decode("utf-8", "replace"))
    if records.contains_nul(safe):
        safe = json.loads(json.dumps(safe).replace("\\u0000", "\\ufffd"))
    return safe


def insert_rule_hits(events: list[EventRow]) -> None:
    """The rule search's rows of inserted events (their `pk` set): one (rule key, time, event
    id) per rule id an event names, by one COPY. PostgreSQL only: SQLite's search matches
    the stored rule ids' text instead."""
    if connection.vendor != "postgresql":
        return
    # One row per key: two ids may share one (a long id's digest, or an id spelled like one).
    # COPY text rows built directly, as the events' (`event_copy_rows`).
    text = copy_text.text
    rows = [
        f"{text(key)}\t{e.time.isoformat()}\t{e.pk}\n"
        for e in events if e.rule_ids for key in dict.fromkeys(map(partitions.rule_key, e.rule_ids))
    ]
    if not rows:
        return
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.cursor.copy(f"COPY {EventRule._meta.db_table} (rule_id, time, event_id) FROM STDIN") as copy:
            copy.write("".join(rows).encode())
