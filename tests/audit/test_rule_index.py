"""The console's rule search (`?rule=`, with a time range) is answered from the
(rule ids, UTC day) index (migration 0007's, redefined per partition in 0008), not by scanning events. Real PostgreSQL: the
plan of the query the API builds, on a table with enough events for the planner to care."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.http import QueryDict

from controlplane.audit import partitions
from controlplane.audit.api.filters import AuditEventFilter
from controlplane.audit.models import AuditEvent, Batch
from tests.identity.factories import AgentFactory

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="the index and EXPLAIN are PostgreSQL's"
)

EVENTS = 5_000
RARE_EVERY = 500  # 10 events name the rule searched for
# The events' month has its partition (migration 0008); the other partitions are empty.
PARTITION = "audit_auditevent_y2026m01"


@pytest.fixture
def events(db):
    agent = AgentFactory(name="rule-index-bot")
    batch = Batch.objects.create(agent=agent, key_id="k", body=b"", record_count=0, byte_count=0)
    with connection.cursor() as cursor:
        partitions.ensure_partitions(cursor, "audit_auditevent", datetime(2026, 1, 1, tzinfo=UTC),
                                     datetime(2026, 1, 2, tzinfo=UTC))
        cursor.execute(
            "INSERT INTO audit_auditevent (record_id, agent_id, key_id, session_id, seq, kind, time, tool, effect, "
            "rule_ids, payload, masked_paths, prev_hash, record_hash, sealed_record, batch_id, stored_at) "
            "SELECT gen_random_uuid(), %s, 'k', 's-' || (n / 100), n, 'decision', "
            "timestamptz '2026-01-01' + n * interval '1 minute', 'ticket_read', 'deny', "
            "CASE WHEN n %% %s = 0 THEN '[\"exfiltration.egress\"]' ELSE '[\"common.allow\"]' END::jsonb, "
            "'{}', '[]', '', md5(n::text), '\\x00', %s, now() FROM generate_series(1, %s) AS n",
            [agent.pk, RARE_EVERY, batch.pk, EVENTS],
        )
        cursor.execute("ANALYZE audit_auditevent")
    return agent


def _plan(params: str) -> str:
    filtered = AuditEventFilter(QueryDict(params), queryset=AuditEvent.objects.all()).qs
    return filtered.order_by("id")[:50].explain()


def test_the_rule_search_uses_the_rule_time_index(events):
    plan = _plan("rule=exfiltration.egress&time_after=2026-01-01T00:00:00Z&time_before=2026-02-01T00:00:00Z")
    assert f"audit_event_rule_time_{PARTITION[-8:]}" in plan, plan
    assert "Seq Scan on audit_auditevent" not in plan, plan
    # Both conditions are answered by the index, not re-checked row by row after it.
    condition = plan.split("on audit_event_rule_time", 1)[1].split("Index Cond:", 1)[1].splitlines()[0]
    # The UTC day of the range (the index's second column); the exact bounds are rechecked.
    day = "(\"time\" AT TIME ZONE 'UTC'::text))::date"
    assert "rule_ids @>" in condition and f"{day} >=" in condition and f"{day} <=" in condition, plan
    found = AuditEventFilter(
        QueryDict("rule=exfiltration.egress&time_after=2026-01-01T00:00:00Z"), queryset=AuditEvent.objects.all()
    ).qs
    assert found.count() == EVENTS // RARE_EVERY
    assert all(event.time >= datetime(2026, 1, 1, tzinfo=UTC) for event in found)
    # Without a time range too (one test: the events are the costly part).
    plan = _plan("rule=exfiltration.egress")
    # Every partition is searched; the one holding the events through the index.
    assert f"audit_event_rule_time_{PARTITION[-8:]}" in plan and f"Seq Scan on {PARTITION}" not in plan, plan
