"""Audit events partitioned by month: append-only on the parent and on every partition (also
ones created later), and retention that drops whole partitions, never inside the minimum
retention. On a scratch table in the test database (controlplane.audit.partitions)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import DatabaseError, connection, transaction

from controlplane.audit import partitions

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="declarative partitioning is PostgreSQL's"
    ),
]

TABLE = "audit_events_partitioned_test"
OLD = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def table():
    with connection.cursor() as cursor:
        partitions.create_table(cursor, TABLE)
        partitions.ensure_partitions(cursor, TABLE, OLD, datetime(2024, 4, 1, tzinfo=UTC))
        now = datetime.now(UTC)
        partitions.ensure_partitions(cursor, TABLE, now, now + timedelta(days=1))
    yield TABLE
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}, {partitions.rule_table(TABLE)} CASCADE")


def _insert(cursor, when: datetime, count: int = 3) -> None:
    for seq in range(count):
        cursor.execute(
            f"INSERT INTO {TABLE} (record_id, agent_id, key_id, session_id, seq, kind, time, tool, effect, rule_ids, "
            "payload, prev_hash, record_hash, sealed_record, batch_id) "
            "VALUES (%s, %s, 'k', 's-1', %s, 'decision', %s, 'ticket_read', 'deny', '[\"egress\"]', '{}', '', "
            "md5(random()::text), '\\x00', 1)",
            [uuid.uuid4(), uuid.UUID(int=1), seq, when + timedelta(minutes=seq)],
        )


def _count(cursor, name: str) -> int:
    cursor.execute(f"SELECT count(*) FROM {name}")
    return cursor.fetchone()[0]


def _refused(sql: str) -> str:
    with pytest.raises(DatabaseError) as error, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    return str(error.value)


@pytest.fixture
def truncater(table):
    """A role that is not a superuser (a superuser passes every trigger anyway) and was
    granted TRUNCATE on the table and its partitions: the trigger still refuses it."""
    role = f"{connection.settings_dict['NAME']}_truncater"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}" NOLOGIN')
    yield role
    with connection.cursor() as cursor:
        cursor.execute(f'DROP OWNED BY "{role}"')
        cursor.execute(f'DROP ROLE "{role}"')


def _truncate_refused(role: str, target: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = '{TABLE}'::regclass")
        for name in [TABLE] + [row[0] for row in cursor.fetchall()]:
            cursor.execute(f'GRANT TRUNCATE ON {name} TO "{role}"')
    return _refused(f'SET LOCAL ROLE "{role}"; TRUNCATE {target}')


def test_rows_land_in_their_month_and_updates_deletes_truncates_are_refused_everywhere(table, truncater):
    with connection.cursor() as cursor:
        _insert(cursor, OLD + timedelta(days=40))  # February 2024
        assert _count(cursor, partitions.partition_name(TABLE, datetime(2024, 2, 1, tzinfo=UTC))) == 3
    february = partitions.partition_name(TABLE, datetime(2024, 2, 1, tzinfo=UTC))
    for target in (TABLE, february):
        assert "append-only" in _refused(f"UPDATE {target} SET effect = 'allow'")
        assert "append-only" in _refused(f"DELETE FROM {target}")
        assert "append-only" in _truncate_refused(truncater, target)
    # Moving a row to another partition is an UPDATE too.
    assert "append-only" in _refused(f"UPDATE {TABLE} SET time = time - interval '40 days'")
    with connection.cursor() as cursor:
        assert _count(cursor, TABLE) == 3


def test_a_partition_created_later_is_protected_too(table, truncater):
    with connection.cursor() as cursor:
        partitions.ensure_partitions(cursor, TABLE, datetime(2030, 6, 1, tzinfo=UTC), datetime(2030, 6, 2, tzinfo=UTC))
        _insert(cursor, datetime(2030, 6, 15, tzinfo=UTC), count=1)
    later = partitions.partition_name(TABLE, datetime(2030, 6, 1, tzinfo=UTC))
    assert "append-only" in _refused(f"DELETE FROM {later}")
    assert "append-only" in _truncate_refused(truncater, later)


def test_retention_drops_whole_partitions_before_the_cutoff_only(table):
    with connection.cursor() as cursor:
        _insert(cursor, datetime(2024, 1, 10, tzinfo=UTC))
        _insert(cursor, datetime(2024, 2, 10, tzinfo=UTC))
        _insert(cursor, datetime(2024, 3, 10, tzinfo=UTC))
        _insert(cursor, datetime.now(UTC) - timedelta(minutes=5), count=1)
        dropped = partitions.drop_partitions_before(cursor, TABLE, datetime(2024, 3, 1, tzinfo=UTC))
        # The rule table's months go with the events' months.
        assert sorted(dropped) == sorted(
            partitions.partition_name(table, datetime(2024, month, 1, tzinfo=UTC))
            for table in (TABLE, partitions.rule_table(TABLE)) for month in (1, 2)
        )
        assert _count(cursor, TABLE) == 4  # March (3) and this month (1) are whole
        cursor.execute("SELECT to_regclass(%s)", [dropped[0]])
        assert cursor.fetchone()[0] is None
        # A cutoff in the middle of a month keeps that month: partitions are dropped whole.
        assert partitions.drop_partitions_before(cursor, TABLE, datetime(2024, 3, 20, tzinfo=UTC)) == []


def test_retention_refuses_a_cutoff_inside_the_minimum_retention(table):
    too_recent = datetime.now(UTC) - timedelta(days=partitions.MIN_RETENTION_DAYS - 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", [TABLE])
        before = cursor.fetchone()[0]
    with pytest.raises(DatabaseError, match="minimum retention"), transaction.atomic(), connection.cursor() as cursor:
        partitions.drop_partitions_before(cursor, TABLE, too_recent)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", [TABLE])
        assert cursor.fetchone()[0] == before


def test_table_names_are_checked():
    with pytest.raises(ValueError):
        partitions.create_table_sql("events; DROP TABLE audit_auditevent")
