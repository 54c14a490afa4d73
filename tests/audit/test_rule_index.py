"""The console's rule search (`?rule=`, with a time range, newest first) is answered from the
rule table's key (rule_id, time, event_id) (migration 0009), one index entry per event
shown, not by fetching and sorting every match. Real PostgreSQL: the plan of the query the
API builds, on tables with enough rows for the planner to care."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.http import QueryDict

from controlplane.audit import partitions
from controlplane.audit.api.filters import AuditEventFilter, by_rule_key
from controlplane.audit.models import AuditEvent, Batch
from tests.audit.conftest import insert_january_events
from tests.identity.factories import AgentFactory

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="the rule table and EXPLAIN are PostgreSQL's"
)

EVENTS = 5_000
RARE_EVERY = 500  # 10 events name the rule searched for
# The events' month has its partitions (migration 0008, 0009); the other partitions are empty.
MONTH = "_y2026m01"
RULE_KEY = f"audit_auditevent_rule_pkey{MONTH}"


def _january_decisions(name: str, *, count: int, minute: str, rules: str):
    """`count` decision events of a new agent `name` in January 2026: the n-th `minute` (SQL
    of n) minutes past its start, naming the rules `rules` (SQL of n giving a JSON array)."""
    agent = AgentFactory(name=name)
    batch = Batch.objects.create(agent=agent, key_id="k", body=b"", record_count=0, byte_count=0)
    insert_january_events(
        "SELECT gen_random_uuid(), %s, 'k', 's-' || (n / 100), n, 'decision', "
        f"timestamptz '2026-01-01' + ({minute}) * interval '1 minute', 'ticket_read', 'deny', ({rules})::jsonb, "
        "'{}', '[]', '', md5(n::text), '\\x00', %s, now() FROM generate_series(1, %s) AS n",
        [agent.pk, batch.pk, count],
    )
    return agent


@pytest.fixture
def events(db):
    return _january_decisions(
        "rule-index-bot", count=EVENTS, minute="n",
        rules=f"CASE WHEN n %% {RARE_EVERY} = 0 THEN '[\"exfiltration.egress\"]' ELSE '[\"common.allow\"]' END",
    )


def _search(params: str):
    """The query the API builds for these parameters in the console's order (EventOrdering)."""
    return AuditEventFilter(QueryDict(params), queryset=AuditEvent.objects.all()).qs.order_by(
        *by_rule_key(["-time", "-id"])
    )


def test_the_rule_search_reads_the_rule_tables_key_in_the_consoles_order(events):
    plan = _search("rule=exfiltration.egress&time_after=2026-01-01T00:00:00Z&time_before=2026-02-01T00:00:00Z")[
        :50
    ].explain()
    # The rule table's key, read backwards (newest first) for this rule and the range ...
    scan = re.search(
        rf"Index Only Scan Backward using {RULE_KEY} on audit_auditevent_rule{MONTH}.*\n\s+Index Cond: (.*)", plan
    )
    assert scan, plan
    assert "rule_id = 'exfiltration.egress'" in scan[1] and '"time" >=' in scan[1] and '"time" <' in scan[1], plan
    # ... each match joined to its event by key; nothing scans the events, nothing sorts them all.
    event = re.search(rf"Index Scan using \S+ on audit_auditevent{MONTH} .*\n\s+Index Cond: (.*)", plan)
    assert "Nested Loop" in plan and event and "audit_auditevent_rule." in event[1], plan
    assert "Seq Scan" not in plan and "Bitmap" not in plan, plan
    assert not re.search(r"(?<!Incremental )Sort\b", plan), plan
    found = _search("rule=exfiltration.egress&time_after=2026-01-01T00:00:00Z")
    assert found.count() == EVENTS // RARE_EVERY
    assert all(event.time >= datetime(2026, 1, 1, tzinfo=UTC) for event in found)
    # Without a time range too (one test: the events are the costly part): every month is
    # searched, the one holding the events through the rule table's key (the empty ones, as
    # the planner likes).
    plan = _search("rule=exfiltration.egress")[:50].explain()
    assert RULE_KEY in plan, plan
    assert (
        f"Seq Scan on audit_auditevent{MONTH}" not in plan and f"Seq Scan on audit_auditevent_rule{MONTH}" not in plan
    ), plan


COMMON_MONTHS = [datetime(2025, month, 1, tzinfo=UTC) for month in range(5, 13)]


@pytest.fixture
def common_rule_over_months(db):
    """A rule named by every 10th event over eight months, with statistics on the partitioned
    parents too (ANALYZE of the parent, as migration 0009 runs on the rule table): with the
    time equality the planner then estimated one match and fetched and sorted them all."""
    agent = AgentFactory(name="rule-months-bot")
    batch = Batch.objects.create(agent=agent, key_id="k", body=b"", record_count=0, byte_count=0)
    with connection.cursor() as cursor:
        partitions.ensure_partitions(cursor, "audit_auditevent", COMMON_MONTHS[0], datetime(2026, 1, 1, tzinfo=UTC))
        cursor.execute(
            "INSERT INTO audit_auditevent (record_id, agent_id, key_id, session_id, seq, kind, time, tool, effect, "
            "rule_ids, payload, masked_paths, prev_hash, record_hash, sealed_record, batch_id, stored_at) "
            "SELECT gen_random_uuid(), %s, 'k', 's-' || (n / 100), n, 'decision', "
            "timestamptz '2025-05-01' + n * interval '10 minutes', 'ticket_read', 'deny', "
            "CASE WHEN n %% 10 = 0 THEN '[\"common.rule\"]' ELSE '[]' END::jsonb, "
            "'{}', '[]', '', md5(n::text), '\\x00', %s, now() FROM generate_series(1, 35000) AS n",
            [agent.pk, batch.pk],
        )
        cursor.execute(partitions.rule_rows_sql("audit_auditevent"))
        for table in ("audit_auditevent", "audit_auditevent_rule"):
            cursor.execute(f"ANALYZE {table}")  # the parent (inherited statistics) and its partitions
    return agent


def test_a_rule_search_is_estimated_at_about_its_matches_so_a_page_stops_early(common_rule_over_months):
    """With the event's time as an equality beside its id, the planner multiplied both and
    estimated one match: it then joined and sorted every match of the rule (1.3 s for the
    commonest rule at 4.8 M events, 1.7 s at 100 M; docs/scale.md). Joined on the id with the
    time as a closed range, it estimates the matches within a small factor, so it reads the
    rule key newest first and stops after the page once the months hold many matches (at this
    size, a hash join is rightly cheaper, so the plan is not asserted here: the bench shows it)."""
    matches = 3500
    with connection.cursor() as cursor:
        sql, params = _search("rule=common.rule").query.sql_with_params()
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0][0]["Plan"]
    while plan["Node Type"] in ("Sort", "Incremental Sort", "Gather", "Gather Merge", "Limit"):
        plan = plan["Plans"][0]
    assert plan["Node Type"] in ("Nested Loop", "Hash Join", "Merge Join"), plan["Node Type"]
    assert matches / 20 <= plan["Plan Rows"] <= matches * 2, plan["Plan Rows"]
    # The console's page: the newest 50, in the console's order, as a JSON query finds them.
    page = list(_search("rule=common.rule").values_list("id", flat=True)[:50])
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM audit_auditevent WHERE rule_ids @> '[\"common.rule\"]' "
                       "ORDER BY time DESC, id DESC LIMIT 50")
        assert page == [row[0] for row in cursor.fetchall()]


def test_a_rule_searchs_count_reads_the_rule_tables_key_and_no_event(events):
    """The page's capped count (CappedCountPagination, through AuditEventFilter.rule_rows_to_count):
    the rule's entries of the rule table's key, no event fetched (a common rule's count fetched
    10,001 events from disk: p99 1.0 s at 50 M events)."""
    for params in ("rule=exfiltration.egress", "rule=exfiltration.egress&time_after=2026-01-01T00:00:00Z"):
        rows = AuditEventFilter(QueryDict(params), queryset=AuditEvent.objects.all()).rule_rows_to_count()
        plan = rows.order_by()[:10_001].explain()
        assert RULE_KEY in plan and f"Seq Scan on audit_auditevent_rule{MONTH}" not in plan, plan  # empty months: any
        assert "audit_auditevent_y" not in plan and "audit_auditevent_default" not in plan, plan
        assert rows.count() == EVENTS // RARE_EVERY


@pytest.fixture
def tied(db):
    """60 events naming one rule, ten to a minute (ties in time), among others that name another."""
    return _january_decisions(
        "rule-ties-bot", count=180, minute="n / 30",
        rules="CASE WHEN n %% 3 = 0 THEN '[\"tied.rule\"]' ELSE '[\"other.rule\"]' END",
    )


def test_a_rule_searchs_page_reads_its_keys_from_the_rule_table_then_only_its_events(tied, auditor_client):
    """The page of a rule search (AuditEventViewSet.page_of): its keys from the rule table, then
    those events by key (one query with their ids). Joined, the planner fetched every match of
    a rare rule to sort them: 732 events for a page of 50, p99 485 ms at 100 M (docs/scale.md).
    Page after page, in each order by time and id, it lists what a JSON query on the events lists."""
    from django.db import connection as db
    from django.test.utils import CaptureQueriesContext

    orders = {"-time,-id": "time DESC, id DESC", "time,id": "time, id", "id": "id", "-id": "id DESC"}
    for ordering, sql_order in orders.items():
        with db.cursor() as cursor:
            cursor.execute(f"SELECT id FROM audit_auditevent WHERE rule_ids @> '[\"tied.rule\"]' ORDER BY {sql_order}")
            expected = [row[0] for row in cursor.fetchall()]
        assert len(expected) == 60
        listed, offset = [], 0
        while True:
            with CaptureQueriesContext(db) as queries:
                page = auditor_client.get(
                    "/api/v1/audit/events/", {"rule": "tied.rule", "ordering": ordering, "limit": 7, "offset": offset}
                ).json()
            listed += [event["id"] for event in page["results"]]
            fetched = [q["sql"] for q in queries if 'FROM "audit_auditevent" ' in q["sql"] and "IN (" in q["sql"]]
            assert len(fetched) == 1 and "audit_auditevent_rule" not in fetched[0], [q["sql"] for q in queries]
            ids = re.search(r'"audit_auditevent"\."id" IN \(([^)]*)\)', fetched[0])[1].split(", ")
            assert sorted(map(int, ids)) == sorted(event["id"] for event in page["results"])  # the page's alone
            if not page["next"]:
                break
            offset += 7
        assert listed == expected, ordering
        assert page["count"] == 60
    # An order a rule row cannot give (seq) is the joined query's, with the same events.
    by_seq = auditor_client.get("/api/v1/audit/events/", {"rule": "tied.rule", "ordering": "seq", "limit": 100}).json()
    assert sorted(event["id"] for event in by_seq["results"]) == sorted(expected)
