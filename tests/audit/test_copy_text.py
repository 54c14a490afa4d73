"""The worker's COPY rows built as bytes (`storage.event_copy_rows`) store exactly what
psycopg's `write_row` stored, whatever the values; the payload cut from the record's
canonical JSON (`records.payload_json`) is exactly the payload's own canonical JSON."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import DataError, connection, transaction
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cryptography.fernet import Fernet

from agents_sdk.records import canonical_json
from controlplane.audit import copy_text, partitions, records, storage
from controlplane.audit.models import AuditEvent, Batch, EventRule
from tests.identity.factories import AgentFactory

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")

# Text PostgreSQL can hold: any code point but U+0000 and surrogates (which have no UTF-8).
HOSTILE = "\\\t\n\r\x01\x1f\x7f\"'{}[],:\u2028\u0085\ufeffé✓😀\\N\\.|"
text_values = st.text(alphabet=st.one_of(st.sampled_from(HOSTILE), st.characters(blacklist_categories=("Cs",),
                                                                                     blacklist_characters="\x00")))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | text_values,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text_values, children, max_size=4),
    max_leaves=20,
)
events = st.fixed_dictionaries({
    "key_id": text_values.map(lambda s: s[:64]),
    "session_id": text_values.map(lambda s: s[:200]),
    "seq": st.integers(0, 2**63 - 1),
    "kind": text_values.map(lambda s: s[:16]),
    "time": st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                         timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                                    timezone(-timedelta(hours=11))])),
    "tool": text_values.map(lambda s: s[:200]),
    "effect": text_values.map(lambda s: s[:32]),
    "rule_ids": st.lists(text_values, max_size=3),
    "payload": json_values,
    "masked_paths": st.lists(text_values, max_size=3),
    "prev_hash": text_values.map(lambda s: s[:64]),
    "record_hash": text_values.map(lambda s: s[:64]),
    # Any bytes, and ASCII like a Fernet token's (sent as is) with the bytes that must go as hex.
    "sealed_record": st.binary(max_size=64) | st.text("AZaz09-_=x\\\t\x01", max_size=64).map(str.encode),
    "signed": st.booleans(),  # payload_json given (cut from the record) or encoded by the store
})
COLUMNS = [c for c in storage.EVENT_COLUMNS if c not in ("id", "record_id", "batch_id")]


def event_row(fields: dict) -> storage.EventRow:
    fields = dict(fields)
    signed = fields.pop("signed")
    row = storage.EventRow(record_id=str(uuid.uuid4()), **fields)
    if signed:
        row.payload_json = canonical_json(row.payload)
    return row


def insert_with_write_row(batch: Batch, events: list[storage.EventRow], now: datetime) -> None:
    """The store as it was written first: psycopg adapts each value (`Copy.write_row`)."""
    table = AuditEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, len(events)]
        )
        for event, (event_id,) in zip(events, cursor.fetchall(), strict=True):
            event.pk = event_id
        with connection.wrap_database_errors, cursor.cursor.copy(
            f"COPY {table} ({', '.join(storage.EVENT_COLUMNS)}) FROM STDIN"
        ) as copy:
            for e in events:
                copy.write_row((
                    e.pk, e.record_id, batch.agent_id, e.key_id, e.session_id, e.seq, e.kind, e.time, e.tool, e.effect,
                    records.json_text(e.rule_ids), records.json_text(e.payload), records.json_text(e.masked_paths),
                    e.prev_hash, e.record_hash, e.sealed_record, batch.pk, now,
                ))


def insert_rule_hits_with_write_row(events: list[storage.EventRow]) -> None:
    """The rule rows as they were written first: psycopg adapts each value (`Copy.write_row`)."""
    rows = [(key, e.time, e.pk) for e in events for key in dict.fromkeys(map(partitions.rule_key, e.rule_ids))]
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.cursor.copy(f"COPY {EventRule._meta.db_table} (rule_id, time, event_id) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def stored_rules(batch: Batch) -> list[tuple]:
    """The rule rows of a batch's events: (rule key, time, the event's place in the batch)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT r.rule_id, r.time, e.id FROM {EventRule._meta.db_table} r "
            f"JOIN {AuditEvent._meta.db_table} e ON e.id = r.event_id WHERE e.batch_id = %s ORDER BY e.id, r.rule_id",
            [batch.pk],
        )
        rows = cursor.fetchall()
    places = {event_id: place for place, event_id in enumerate(dict.fromkeys(row[2] for row in rows))}
    return [(rule, moment, places[event_id]) for rule, moment, event_id in rows]


def stored(batch: Batch) -> list[tuple]:
    """The stored columns of a batch's events, in insert order; jsonb also as its text."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(COLUMNS)}, rule_ids::text, payload::text, masked_paths::text "
            f"FROM {AuditEvent._meta.db_table} WHERE batch_id = %s ORDER BY id",
            [batch.pk],
        )
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in cursor.fetchall()]


@pytest.fixture
def two_batches(db):
    agent = AgentFactory(name="copy-bot")
    return [Batch.objects.create(agent=agent, key_id="k", body=b"", record_count=0, byte_count=0) for _ in range(2)]


@postgres_only
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(events, min_size=1, max_size=4))
@example(rows=[{
    "key_id": "\\", "session_id": "a\tb\nc\rd\\e\\N", "seq": 0, "kind": "\\.", "time": datetime(2026, 1, 1, tzinfo=UTC),
    "tool": "x" * 200, "effect": "\t", "rule_ids": ["r\\\"", "\n"], "payload": {"big": "\\\t" * 300_000, "é": [1.5e300]},
    "masked_paths": ["/a~1b", "\r"], "prev_hash": "\\x00", "record_hash": "", "sealed_record": b"\x00\\\t\n\xff",
    "signed": True,
}])
def test_copy_rows_built_as_bytes_store_what_write_row_stored(two_batches, rows):
    fast, slow = two_batches
    now = datetime.now(UTC)
    with transaction.atomic():
        fast_events, slow_events = [event_row(r) for r in rows], [event_row(r) for r in rows]
        storage.insert_events(fast, fast_events, now)
        insert_with_write_row(slow, slow_events, now)
        assert stored(fast) == stored(slow)
        assert len(stored(fast)) == len(rows)
        # The rule search's rows, also built as bytes, and the same way.
        storage.insert_rule_hits(fast_events)
        insert_rule_hits_with_write_row(slow_events)
        assert stored_rules(fast) == stored_rules(slow)
        assert len(stored_rules(fast)) == sum(len(set(map(partitions.rule_key, r["rule_ids"]))) for r in rows)
        transaction.set_rollback(True)


@postgres_only
@pytest.mark.parametrize("column", ["key_id", "session_id", "tool", "effect", "kind", "prev_hash"])
def test_a_nul_in_a_text_value_is_refused_as_psycopg_refuses_it(two_batches, column):
    fast, slow = two_batches
    fields = {"key_id": "k", "session_id": "s", "seq": 0, "kind": "result", "time": datetime(2026, 1, 1, tzinfo=UTC),
              "tool": "", "effect": "", "rule_ids": [], "payload": {}, "masked_paths": [], "prev_hash": "p",
              "record_hash": "h", "sealed_record": b"x", "signed": False, column: "a\x00b"}
    messages = []
    for insert, batch in ((storage.insert_events, fast), (insert_with_write_row, slow)):
        with pytest.raises(DataError) as refused, transaction.atomic():
            insert(batch, [event_row(fields)], datetime.now(UTC))
        messages.append(str(refused.value))
    assert messages[0] == messages[1] == copy_text.NUL_MESSAGE


@pytest.mark.parametrize("value", ["plain", "", "a\\b", "\t", "\n\r", "é\\\\t"])
def test_copy_text_escapes_what_the_text_format_requires(value):
    expected = "".join({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}.get(c, c) for c in value)
    assert copy_text.text(value) == expected


# -- the payload cut from the record's canonical JSON -----------------------------------

tricky_keys = st.sampled_from(["payload", "prev_hash", ',"prev_hash":"', ',"payload":', "seq", "time", "a\"b"])


@given(payload=st.recursive(
    json_values, lambda children: st.dictionaries(tricky_keys | text_values, children, max_size=4), max_leaves=20,
), text=text_values | st.sampled_from([',"prev_hash":"', ',"payload":{', '\\",\\"prev_hash\\":\\"']))
def test_the_payload_cut_from_the_record_is_the_payload_encoded_alone(payload, text):
    record = {
        "agent": f"bot {text}", "key_id": "k" * 64, "kind": text or "result", "payload": payload,
        "prev_hash": "0" * 64, "record_id": str(uuid.UUID(int=7)), "seq": 3, "session_id": text,
        "signature": "c2ln", "time": "2026-01-01T00:00:00Z",
    }
    assert records.payload_json(records.canonical_bytes(record)) == canonical_json(payload)


# -- which events store the payload's text as signed ------------------------------------


def test_an_intent_masked_only_by_the_next_decisions_pointer_is_stored_masked(ship, signer):
    """Its payload names no sensitive key (its text as signed would do), until the decision
    after it in the batch masks `/action/args/note`: the stored text must be the masked one."""
    with signer.session(session_id="pointer-only") as session:
        signed = [
            session.intent("refund", {"ticket": 4711, "note": "call me on 555-0100"}),
            session.decision("allow", reasons=[{"rule": "r", "message": "m", "controls": []}],
                             obligations={"mask": ["/action/args/note"]}),
            session.result("refunded"),
        ]
    ship(signed)
    intent, decision, result = AuditEvent.objects.order_by("seq")
    assert intent.payload["args"] == {"ticket": 4711, "note": "[masked]"}
    assert intent.masked_paths == ["/args/note"]
    assert decision.payload == signed[1]["payload"] and result.payload == signed[2]["payload"]


TOKEN = Fernet(Fernet.generate_key()).encrypt(b'{"record":"\\\t"}')


@postgres_only
@pytest.mark.parametrize("sealed", [
    TOKEN, b"", b"x41", b"\\x41", b"\\\\x41", b"\\001", b"\\N", b"a\\b", b"\\.", b"abc\x7f\x01\x1f",
    b"\x00", b"\t\n\r", b"\xc3\xa9", b"\x80\xff",
], ids=lambda sealed: "fernet-token" if sealed is TOKEN else None)  # the token is random: xdist's workers must agree on ids
def test_a_sealed_record_is_stored_as_its_exact_bytes_sent_as_is_or_in_hex(two_batches, sealed):
    # A Fernet token (base64url) goes as its own bytes; any byte bytea's escape format or
    # COPY would read otherwise (backslash, tab, newline, CR, U+0000, non-ASCII) sends hex.
    assert copy_text.literal_bytea(TOKEN)
    event = event_row({
        "key_id": "k", "session_id": "s", "seq": 0, "kind": "output", "time": datetime.now(UTC), "tool": "",
        "effect": "", "rule_ids": [], "payload": {}, "masked_paths": [], "prev_hash": "p", "record_hash": "h",
        "sealed_record": sealed, "signed": False,
    })
    storage.insert_events(two_batches[0], [event], datetime.now(UTC))
    assert bytes(AuditEvent.objects.get(pk=event.pk).sealed_record) == sealed
