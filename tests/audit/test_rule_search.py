"""The rule search goes through the rule table (migration 0009) and finds exactly what a
JSON query on the events finds; the table is filled at ingestion and back-filled by the
migration, append-only to the app role, and its months leave with the events'. The events
list counts its matches up to a cap (on SQLite too). Real PostgreSQL."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from controlplane.audit import checkpoints, partitions, retention
from controlplane.audit.api.pagination import CappedCountPagination
from controlplane.audit.models import AuditEvent, EventRule
from tests.audit.conftest import register, sign_session
from tests.audit.test_database_roles import connected_as, refused, roles  # noqa: F401  (fixture)
from tests.audit.test_live_partitions import _backdated

postgres_only = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="the rule table is PostgreSQL's"
)

EVENTS = "/api/v1/audit/events/"
LONG = "x" * 5000  # past a B-tree entry: keyed by its digest
HOSTILE = [
    "règle-ünïcødé-😀",
    'it\'s "quoted" \\ back\\slash',
    LONG,
    "y" * 3000,
    "%_wild%",
    "a",
    "a b",
    "Rule-Case",
    "rule-case",
    '["array"]',
    "{}",
    "rule-1",
    "rule-10",
    " padded ",
    "sha256:" + hashlib.sha256(LONG.encode()).hexdigest(),  # spelled as the long one's key
]
MANY = [f"rule-{i}" for i in range(60)]


def _decision(session, rules: list[str], effect: str = "deny") -> dict:
    return session.decision(effect, reasons=[{"rule": rule, "message": "m", "controls": []} for rule in rules])


def _console_ids(client, **query) -> list[int]:
    ids, offset = [], 0
    while True:
        page = client.get(EVENTS, {**query, "ordering": "-time,-id", "limit": 1000, "offset": offset}).json()
        ids += [event["id"] for event in page["results"]]
        if not page["next"]:
            return ids
        offset += 1000


def _json_query_ids(rule: str, after: datetime | None = None) -> list[int]:
    """What the search found before the rule table: JSON containment on the events."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM audit_auditevent WHERE rule_ids @> jsonb_build_array(%s::text) "
            "AND (%s::timestamptz IS NULL OR time >= %s) ORDER BY time DESC, id DESC",
            [rule, after, after],
        )
        return [row[0] for row in cursor.fetchall()]


@pytest.fixture
def ruled(ship, signer):
    """Sessions whose decisions name many rules, hostile ones, one (spelled as a long one's
    key), and none."""
    records = []
    for name, decisions in (
        ("many", [MANY + HOSTILE, MANY[::7]]),
        ("hostile", [[r, "rule-1"] for r in HOSTILE]),
        ("digest-only", [[HOSTILE[-1]]]),
        ("none", [[]]),
    ):
        with signer.session(session_id=f"s-{name}") as session:
            records.append(session.intent("refund", {"amount_cents": 1}))
            records += [_decision(session, rules) for rules in decisions]
            records.append(session.output("done"))
    assert ship(records).status_code == 202
    return AuditEvent.objects.order_by("time", "id")


@postgres_only
def test_the_rule_search_finds_what_a_json_query_finds(ruled, auditor_client):
    events = list(ruled)
    assert len(events) > 20
    # Ingestion filled the rule table: one row per event and distinct rule key.
    expected = {(partitions.rule_key(rule), event.pk) for event in events for rule in event.rule_ids}
    assert set(EventRule.objects.values_list("rule_id", "event_id")) == expected
    later = events[len(events) // 2].time
    for rule in [*MANY, *HOSTILE, "absent", "rule", "x" * 4999, LONG + "x"]:
        found = _console_ids(auditor_client, rule=rule)
        assert found == _json_query_ids(rule), rule[:40]
        assert _console_ids(auditor_client, rule=rule, time_after=later.isoformat()) == _json_query_ids(rule, later)
    assert len(_console_ids(auditor_client, rule="rule-1")) == 1 + len(HOSTILE)
    # Only the events naming the long rule, not the one naming its key literally (and back).
    assert len(_console_ids(auditor_client, rule=LONG)) == 2
    assert len(_console_ids(auditor_client, rule=HOSTILE[-1])) == 3


@postgres_only
def test_the_migration_back_fills_the_rule_table_of_an_existing_database(ruled, auditor_client):
    """0008 -> 0009 on a database holding events (in the test's transaction, rolled back)."""
    before = {rule: _console_ids(auditor_client, rule=rule) for rule in ("rule-1", LONG, HOSTILE[0], MANY[7])}
    rows = set(EventRule.objects.values_list("rule_id", "time", "event_id"))
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the events' deferred keys, before DDL on their table
    executor = MigrationExecutor(connection)
    executor.migrate([("audit", "0008_partitioned_events")])
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('audit_auditevent_rule')")
        assert cursor.fetchone() == (None,)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([("audit", "0009_event_rules")])
    assert set(EventRule.objects.values_list("rule_id", "time", "event_id")) == rows
    assert {rule: _console_ids(auditor_client, rule=rule) for rule in before} == before
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('audit_event_rule_time')")  # the GIN index it replaces
        assert cursor.fetchone() == (None,)
        # Every month of the events has its rule month.
        months = {lower for _, lower, _ in partitions.monthly_partitions(cursor, "audit_auditevent")}
        assert {lower for _, lower, _ in partitions.monthly_partitions(cursor, "audit_auditevent_rule")} == months


def test_the_events_list_counts_up_to_a_cap(ship, signer, auditor_client, monkeypatch):
    monkeypatch.setattr(CappedCountPagination, "count_cap", 5)
    ship(sign_session(signer, "s1") + sign_session(signer, "s2") + sign_session(signer, "s3"))  # 12 events
    page = auditor_client.get(EVENTS, {"limit": 2}).json()
    assert (page["count"], page["count_is_capped"], len(page["results"])) == (5, True, 2)
    assert "offset=2" in page["next"]
    # At the cap's page, rows still follow: a next page is given.
    page = auditor_client.get(EVENTS, {"limit": 2, "offset": 4}).json()
    assert (page["count"], page["count_is_capped"]) == (6, True) and "offset=6" in page["next"]
    # Past the cap, a page counts as far as itself (and one more).
    page = auditor_client.get(EVENTS, {"limit": 2, "offset": 8}).json()
    assert (page["count"], page["count_is_capped"], len(page["results"])) == (10, True, 2) and page["next"]
    page = auditor_client.get(EVENTS, {"limit": 2, "offset": 10}).json()
    assert (page["count"], page["count_is_capped"], len(page["results"]), page["next"]) == (12, False, 2, None)
    # Under the cap: exact.
    page = auditor_client.get(EVENTS, {"session": "s1"}).json()
    assert (page["count"], page["count_is_capped"], page["next"]) == (4, False, None)


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_rule_table_is_append_only_to_the_app_role(roles, ship, signer):  # noqa: F811
    ship(sign_session(signer, "s1"))
    row = EventRule.objects.get()
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM audit_auditevent_rule")
        (part,) = cursor.fetchone()
    assert part.startswith("audit_auditevent_rule_y")
    with connected_as(roles.app) as app:
        assert app.execute("SELECT count(*) FROM audit_auditevent_rule").fetchone() == (1,)
        for statement in (
            "UPDATE audit_auditevent_rule SET rule_id = 'other'",
            "DELETE FROM audit_auditevent_rule",
            f"UPDATE {part} SET rule_id = 'other'",
            f"DELETE FROM {part}",
            f"INSERT INTO {part} SELECT * FROM {part}",
            f"TRUNCATE {part}",
        ):
            assert "permission denied" in refused(app, statement), statement
        for statement in (
            "TRUNCATE audit_auditevent_rule",
            "ALTER TABLE audit_auditevent_rule DISABLE TRIGGER ALL",
            f"ALTER TABLE audit_auditevent_rule DETACH PARTITION {part}",
            f"DROP TABLE {part}",
        ):
            assert "must be owner" in refused(app, statement) or "permission denied" in refused(app, statement)
        # What ingestion does, the app role may: add rows.
        app.execute("INSERT INTO audit_auditevent_rule VALUES ('added', %s, %s)", [row.time, row.event_id])
    with connected_as(roles.retention) as job:
        # Its months go only with the events' (never on their own).
        assert "leave with their events" in refused(
            job, "SELECT warden_audit_drop_partitions('audit_auditevent_rule', now() - interval '400 days')"
        )
    assert EventRule.objects.count() == 2


@pytest.fixture
def _drop_test_months():
    yield
    keep = partitions.add_months(partitions.month_start(timezone.now()), -1)
    with connection.cursor() as cursor:
        for table in ("audit_auditevent", "audit_auditevent_rule"):
            for name, lower, _ in partitions.monthly_partitions(cursor, table):
                if lower < keep:
                    cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {name}")
                    cursor.execute(f"DROP TABLE {name}")


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_retention_drops_the_rule_month_with_the_events_month(ship, _drop_test_months):
    identity = AgentIdentity.create("archive-bot", "ops@example.com", ["read:tickets"])
    key = register(identity)
    long_ago = partitions.month_start(timezone.now() - timedelta(days=800)) + timedelta(days=3)
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # the key existed then (past the history trigger)
        cursor.execute(
            "UPDATE identity_agentkey SET created_at = %s WHERE key_id = %s", [long_ago - timedelta(days=1), key.key_id]
        )
        cursor.execute("SET session_replication_role = origin")
        created = partitions.ensure_partitions(cursor, "audit_auditevent", long_ago, long_ago + timedelta(days=1))
    events_month, rule_month = (
        partitions.partition_name(t, long_ago) for t in ("audit_auditevent", "audit_auditevent_rule")
    )
    assert created == [events_month, rule_month]  # created together
    signer = ActionSigner(identity)
    ship(_backdated(identity, sign_session(signer, "old"), long_ago), who=identity)
    ship(sign_session(signer, "recent"), who=identity)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {rule_month}")
        assert cursor.fetchone() == (1,)
    checkpoints.create_checkpoints()

    retention.apply_retention()

    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s), to_regclass(%s)", [events_month, rule_month])
        assert cursor.fetchone() == (None, None)
    recent = AuditEvent.objects.get(session_id="recent", kind="decision")
    assert list(EventRule.objects.values_list("event_id", flat=True)) == [recent.pk]
