"""The live audit events table is partitioned by month (migration 0008): rows land in their
month's partition or, with none yet, in the default one; months are created ahead; a
replayed record is still stored once; retention drops a whole expired month after naming
its events in signed checkpoints, never inside the minimum retention. Real PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner, canonical_json
from controlplane.audit import checkpoints, integrity, partitions, retention
from controlplane.audit.models import AuditEvent, Batch, Checkpoint, CheckpointKind, QuarantinedRecord
from tests.audit.conftest import register, resign, sign_session

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="declarative partitioning is PostgreSQL's"
    ),
]

TABLE = "audit_auditevent"


@pytest.fixture(autouse=True)
def _no_months_left_behind():
    """Partitions outlive the flush between tests: drop the months a test made (before last
    month), so later tests (and the app-role copy of this database) find the layout 0008 made."""
    yield
    keep = partitions.add_months(partitions.month_start(timezone.now()), -1)
    with connection.cursor() as cursor:
        for table in (TABLE, partitions.rule_table(TABLE)):  # the rule table's months come with the events'
            for name, lower, _ in partitions.monthly_partitions(cursor, table):
                if lower < keep:
                    cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {name}")
                    cursor.execute(f"DROP TABLE {name}")


def _partition_of(event_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {TABLE} WHERE id = %s", [event_id])
        return cursor.fetchone()[0]


def _exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return cursor.fetchone()[0]


def test_the_live_events_table_is_partitioned_by_month_with_months_ahead_and_a_default():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.partstrat, a.attname FROM pg_partitioned_table p "
            "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
            "WHERE p.partrelid = %s::regclass",
            [TABLE],
        )
        assert cursor.fetchone() == ("r", "time")
        cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE conrelid = %s::regclass AND contype IN ('p', 'u') ORDER BY conname", [TABLE])
        assert cursor.fetchall() == [
            ("audit_auditevent_pkey", "PRIMARY KEY (id, \"time\")"),
            ("audit_event_record_id_per_agent", "UNIQUE (agent_id, record_id, \"time\")"),
        ]
        names = {name for name, _, _ in partitions.monthly_partitions(cursor, TABLE)}
    month = partitions.month_start(timezone.now())
    for ahead in range(retention.MONTHS_AHEAD + 1):
        assert partitions.partition_name(TABLE, partitions.add_months(month, ahead)) in names
    assert _exists(f"{TABLE}_default")


def test_a_shipped_session_lands_in_its_months_partition_and_a_replay_is_stored_once(ship, signer):
    records = sign_session(signer, "s1")
    ship(records)
    ship(records)  # the shipper retried: every record again
    events = list(AuditEvent.objects.order_by("id"))
    assert len(events) == len(records)
    assert {_partition_of(e.pk) for e in events} == {partitions.partition_name(TABLE, timezone.now())}
    assert set(QuarantinedRecord.objects.values_list("reason", flat=True)) == {"replayed"}
    # The database refuses the same (agent, record id, time) twice, whatever the verifier did.
    first = AuditEvent.objects.values().get(pk=events[0].pk)
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditEvent.objects.create(**{**first, "id": None})


def _insert_events(agent, batch, when: datetime, count: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (record_id, agent_id, key_id, session_id, seq, kind, time, tool, effect, rule_ids, "
            "payload, masked_paths, prev_hash, record_hash, sealed_record, batch_id, stored_at) "
            "SELECT gen_random_uuid(), %s, 'k', 's', n, 'decision', %s + n * interval '1 minute', 't', 'deny', "
            "'[\"r\"]', '{}', '[]', '', md5(n::text), '\\x00', %s, now() FROM generate_series(1, %s) AS n",
            [agent.pk, when, batch.pk, count],
        )


@pytest.fixture
def batch(identity):
    agent = identity_agent(identity)
    return Batch.objects.create(agent=agent, key_id=identity.key_id, body=b"", record_count=0, byte_count=0)


def identity_agent(identity: AgentIdentity):
    from controlplane.identity.models import Agent

    return Agent.objects.get(name=identity.name)


def test_a_row_for_a_month_without_partition_lands_in_the_default_and_stays_there(batch):
    ancient = datetime(2001, 2, 3, tzinfo=UTC)
    _insert_events(batch.agent, batch, ancient, 2)
    assert {_partition_of(pk) for pk in AuditEvent.objects.values_list("pk", flat=True)} == {f"{TABLE}_default"}
    with connection.cursor() as cursor:
        # Creating its month would have to move rows out of the default (append-only): it is skipped.
        assert partitions.ensure_partitions(cursor, TABLE, ancient, ancient + timedelta(days=1)) == []
        # Another empty month is created, with the partition guarantees.
        created = partitions.ensure_partitions(cursor, TABLE, datetime(2001, 5, 1, tzinfo=UTC),
                                               datetime(2001, 5, 2, tzinfo=UTC))
        assert created == [f"{TABLE}_y2001m05", f"{TABLE}_rule_y2001m05"]
        cursor.execute("SELECT relacl FROM pg_class WHERE relname = %s", [created[0]])
        assert cursor.fetchone()[0] in (None, [f"{connection.settings_dict['USER']}=arwdDxt/"
                                               f"{connection.settings_dict['USER']}"])
        cursor.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname LIKE %s",
                       [created[0], "%no_truncate"])
        assert cursor.fetchone()[0] == 1
    assert AuditEvent.objects.count() == 2


def test_months_ahead_are_created_when_missing():
    month = partitions.add_months(partitions.month_start(timezone.now()), retention.MONTHS_AHEAD)
    last = partitions.partition_name(TABLE, month)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {last}")
        cursor.execute(f"DROP TABLE {last}")
    assert retention.create_partitions_ahead() == [last]
    assert retention.create_partitions_ahead() == []
    assert _exists(last)


def _backdated(identity: AgentIdentity, records: list[dict], when: datetime) -> list[dict]:
    """The session re-signed as signed at `when` (the chain re-linked record by record)."""
    out, previous = [], records[0]["prev_hash"]
    for index, record in enumerate(records):
        moment = (when + timedelta(seconds=index)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        signed = resign(identity, dict(record, time=moment, prev_hash=previous))
        previous = hashlib.sha256(canonical_json(signed)).hexdigest()
        out.append(signed)
    return out


def test_retention_drops_a_whole_expired_month_named_in_signed_checkpoints(ship, audit_witness):
    identity = AgentIdentity.create("archive-bot", "ops@example.com", ["read:tickets"])
    key = register(identity)
    long_ago = partitions.month_start(timezone.now() - timedelta(days=800)) + timedelta(days=3)
    with connection.cursor() as cursor:  # the key existed then (test set-up, past the key-history trigger)
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("UPDATE identity_agentkey SET created_at = %s WHERE key_id = %s",
                       [long_ago - timedelta(days=1), key.key_id])
        cursor.execute("SET session_replication_role = origin")
        partitions.ensure_partitions(cursor, TABLE, long_ago, long_ago + timedelta(days=1))
    old_month = partitions.partition_name(TABLE, long_ago)
    signer = ActionSigner(identity)
    old = _backdated(identity, sign_session(signer, "old"), long_ago)
    ship(old, who=identity)
    ship(sign_session(signer, "recent"), who=identity)
    assert AuditEvent.objects.count() == 8
    assert {_partition_of(e.pk) for e in AuditEvent.objects.filter(session_id="old")} == {old_month}
    checkpoints.create_checkpoints()

    made = retention.apply_retention()

    assert not _exists(old_month)
    assert set(AuditEvent.objects.values_list("session_id", flat=True)) == {"recent"}
    dropped = [c for c in made if c.statement.get("partition") == old_month]
    assert [c.event_count for c in dropped] == [4] and dropped[0].kind == CheckpointKind.RETENTION
    report = integrity.verify_log()
    assert report.ok, report.problems
    assert Checkpoint.objects.filter(kind=CheckpointKind.RETENTION).count() == 1


def test_dropping_months_is_refused_inside_the_minimum_retention():
    too_recent = timezone.now() - timedelta(days=partitions.MIN_RETENTION_DAYS - 1)
    with connection.cursor() as cursor:
        before = partitions.monthly_partitions(cursor, TABLE)
    with pytest.raises(DatabaseError, match="minimum retention"), transaction.atomic(), connection.cursor() as cursor:
        partitions.drop_partitions_before(cursor, TABLE, too_recent)
    with connection.cursor() as cursor:
        assert partitions.monthly_partitions(cursor, TABLE) == before


def test_record_ids_are_still_unique_per_agent_not_across_agents(batch):
    other = register(AgentIdentity.create("other-bot", "ops@example.com", []))
    when = timezone.now()
    shared = uuid.uuid4()
    with connection.cursor() as cursor:
        for agent_id in (batch.agent_id, other.agent_id):
            cursor.execute(
                f"INSERT INTO {TABLE} (record_id, agent_id, key_id, session_id, seq, kind, time, tool, effect, "
                "rule_ids, payload, masked_paths, prev_hash, record_hash, sealed_record, batch_id, stored_at) "
                "VALUES (%s, %s, 'k', 's', 0, 'decision', %s, '', '', '[]', '{}', '[]', '', 'h', '\\x00', %s, now())",
                [shared, agent_id, when, batch.pk],
            )
    assert AuditEvent.objects.filter(record_id=shared).count() == 2


def test_dropping_a_month_with_events_no_checkpoint_covers_is_refused(batch):
    long_ago = partitions.month_start(timezone.now() - timedelta(days=800))
    with connection.cursor() as cursor:
        month, _ = partitions.ensure_partitions(cursor, TABLE, long_ago, long_ago + timedelta(days=1))  # and its rules
    _insert_events(batch.agent, batch, long_ago + timedelta(days=2), 3)
    with pytest.raises(DatabaseError, match="no checkpoint covers"), transaction.atomic(), \
            connection.cursor() as cursor:
        partitions.drop_partitions_before(cursor, TABLE, partitions.next_month(long_ago))
    assert _exists(month) and AuditEvent.objects.count() == 3
    # The retention job leaves it for after the next checkpoint.
    assert retention.drop_expired_partitions(now=timezone.now(), max_events=100) == []
    assert _exists(month)
