"""The console's rule search (`?rule=`, with a time range, newest first) is answered from the
rule table's key (rule_id, time, event_id) (migration 0009), one index entry per event
shown, not by fetching and sorting every match. Real PostgreSQL: the plan of the query the
API builds, on tables with enough rows for the planner to care."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.http import QueryDict

from controlplane.audit import partitions
from controlplane.audit.api.filters import AuditEventFilter
from controlplane.audit.models import AuditEvent, Batch
from tests.identity.factories import AgentFactory

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="the rule table and EXPLAIN are PostgreSQL's"
)

EVENTS = 5_000
RARE_EVERY = 500  # 10 events name the rule searched for
# The events' month has its partitions (migration 0008, 0009); the other partitions are empty.
MONTH = "_y2026m01"
RULE_KEY = f"audit_auditevent_rule_pkey{MONTH}"


@pytest.fixture
def events(db):
    agent = AgentFactory(name="rule-index-bot")
    batch = Batch.objects.create(agent=agent, key_id="k", body=b"", record_count=0, byte_count=0)
    with connection.cursor() as cursor:
        partitions.ensure_partitions(
            cursor, "audit_auditevent", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
        )
        cursor.execute(
            "INSERT INTO audit_auditevent (record_id, agent_id, key_id, session_id, seq, kind, time, tool, effect, "
            "rule_ids, payload, masked_paths, prev_hash, record_hash, sealed_record, batch_id, stored_at) "
            "SELECT gen_random_uuid(), %s, 'k', 's-' || (n / 100), n, 'decision', "
            "timestamptz '2026-01-01' + n * interval '1 minute', 'ticket_read', 'deny', "
            "CASE WHEN n %% %s = 0 THEN '[\"exfiltration.egress\"]' ELSE '[\"common.allow\"]' END::jsonb, "
            "'{}', '[]', '', md5(n::text), '\\x00', %s, now() FROM generate_series(1, %s) AS n",
            [agent.pk, RARE_EVERY, batch.pk, EVENTS],
        )
        cursor.execute(partitions.rule_rows_sql("audit_auditevent"))  # as ingestion and the migration fill it
        cursor.execute("ANALYZE audit_auditevent")
        cursor.execute("ANALYZE audit_auditevent_rule")
    return agent


def _search(params: str):
    return AuditEventFilter(QueryDict(params), queryset=AuditEvent.objects.all()).qs.order_by("-time", "-id")


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
