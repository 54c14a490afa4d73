"""The events list's capped count of a rule search counts the rule table's rows alone (its
key and narrow rows, not 10,001 events fetched from disk) when
nothing but the rule, the time range and the status filter, and says what the events say;
with any other filter, or a rule keyed by its digest, it counts the events. Migration 0011
removes rule rows whose event is gone, which that count would otherwise include. Real
PostgreSQL."""

from __future__ import annotations

import os

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext

from controlplane.audit import checkpoints, selectors
from controlplane.audit.api.pagination import CappedCountPagination
from controlplane.audit.models import AuditEvent, EventRule
from tests.audit.conftest import sign_session
from tests.audit.test_rule_search import EVENTS, HOSTILE, MANY, _decision, ruled  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="the rule table is PostgreSQL's"
)

CAP = 5


def _json_query_count(rule: str, *, after=None, before=None, upto=None, pending=False) -> int:
    """What the events say: JSON containment on their rule ids (the search before 0009)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM audit_auditevent WHERE rule_ids @> jsonb_build_array(%s::text) "
            "AND (%s::timestamptz IS NULL OR time >= %s) AND (%s::timestamptz IS NULL OR time < %s) "
            "AND (%s::bigint IS NULL OR (id > %s) = %s)",
            [rule, after, after, before, before, upto, upto, pending],
        )
        return cursor.fetchone()[0]


def _counted(client, **query) -> tuple[tuple[int, bool], str]:
    """The page's (count, count_is_capped) and the SQL of the count the API ran."""
    with CaptureQueriesContext(connection) as queries:
        page = client.get(EVENTS, {**query, "ordering": "-time,-id", "limit": 2}).json()
    (count_sql,) = [q["sql"] for q in queries if q["sql"].startswith("SELECT COUNT(*)")]
    return (page["count"], page["count_is_capped"]), count_sql


def _reads_events(sql: str) -> bool:
    return '"audit_auditevent"' in sql


@pytest.fixture
def capped(monkeypatch):
    monkeypatch.setattr(CappedCountPagination, "count_cap", CAP)


def test_a_rule_searchs_count_reads_only_rule_rows_and_says_what_the_events_say(ruled, auditor_client, capped):  # noqa: F811
    events = list(ruled)
    middle = events[len(events) // 2].time
    for rule in [*MANY[:8], *HOSTILE, "absent", "rule"]:
        digest = len(rule.encode()) > 200 or rule.startswith("sha256:")
        for window in ({}, {"after": middle}, {"before": middle}, {"after": events[0].time, "before": middle}):
            query = {"rule": rule, **{f"time_{side}": moment.isoformat() for side, moment in window.items()}}
            expected = _json_query_count(rule, **window)
            counted, sql = _counted(auditor_client, **query)
            assert counted == (min(expected, CAP), expected > CAP), (rule[:40], window)
            # Short ids: the rule table alone; digest keys recheck the events' rule ids.
            assert _reads_events(sql) == digest, sql
            assert "audit_auditevent_rule" in sql


def test_the_status_filter_counts_rule_rows_by_their_events_ids(ship, signer, ruled, auditor_client, capped):  # noqa: F811
    checkpoints.create_checkpoints()
    with signer.session(session_id="s-after-checkpoint") as session:
        assert ship([session.intent("refund", {}), _decision(session, ["rule-1"])]).status_code == 202
    upto = selectors.checkpointed_upto()
    assert 0 < upto < AuditEvent.objects.order_by("-id").values_list("id", flat=True)[0]
    for status, pending in (("checkpointed", False), ("pending_checkpoint", True)):
        counted, sql = _counted(auditor_client, rule="rule-1", status=status)
        expected = _json_query_count("rule-1", upto=upto, pending=pending)
        assert counted == (min(expected, CAP), expected > CAP) and not _reads_events(sql), status
    assert _counted(auditor_client, rule="rule-1", status="pending_checkpoint")[0] == (1, False)


@pytest.mark.parametrize(
    "other", [{"kind": "intent"}, {"kind": "decision"}, {"session": "s-hostile"}, {"agent": "nobody"},
              {"tool": "refund"}, {"effect": "allow"}, {"effect": "deny"}],
)
def test_a_rule_search_with_another_filter_counts_the_events(ruled, auditor_client, capped, other):  # noqa: F811
    counted, sql = _counted(auditor_client, rule="rule-1", **other)
    found = auditor_client.get(EVENTS, {"rule": "rule-1", **other, "limit": 1000}).json()["results"]
    assert counted == (min(len(found), CAP), len(found) > CAP)
    assert _reads_events(sql)


def test_migration_0011_removes_rule_rows_whose_event_is_gone(ship, signer, auditor_client):
    ship(sign_session(signer, "s1"))
    kept = set(EventRule.objects.values_list("rule_id", "time", "event_id"))
    (rule_id, time, event_id) = next(iter(kept))
    with connection.cursor() as cursor:
        # Left behind by row-by-row retention before 0010 (as superuser: the app role only inserts).
        cursor.execute("INSERT INTO audit_auditevent_rule VALUES (%s, %s, %s)", [rule_id, time, event_id + 1000])
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the events' deferred keys, before the migrations
    assert _counted(auditor_client, rule=rule_id)[0] == (2, False)  # one event, two rule rows
    executor = MigrationExecutor(connection)
    executor.migrate([("audit", "0010_retention_removes_rule_rows")])
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([("audit", "0011_rule_rows_without_events")])
    assert set(EventRule.objects.values_list("rule_id", "time", "event_id")) == kept
    assert _counted(auditor_client, rule=rule_id)[0] == (1, False)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user = session_user")  # the migration gave its role back
        assert cursor.fetchone() == (True,)
