"""Two filters at once (issue #20, migration 0012): an agent's calls of a tool, an agent's or
a tool's denies, an agent's events naming a rule. Each is answered by an index of both
filters in the console's order, not by one filter's index with the other checked on every
event it finds (946 ms to 3.2 s p99 at 100 M events; docs/scale.md). Real PostgreSQL: the
plan of the query the API builds, and its results against the plain query on hostile data."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.http import QueryDict

from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from controlplane.audit import partitions
from controlplane.audit.api.filters import AuditEventFilter, by_rule_key
from controlplane.audit.models import AuditEvent, Batch
from tests.audit.conftest import insert_january_events, register
from tests.identity.factories import AgentFactory

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="partial indexes and EXPLAIN are PostgreSQL's"
)

MONTH = "_y2026m01"
EVENTS = 20_000


@pytest.fixture
def crowd(db):
    """January 2026: busy-bot's 19,800 events over 50 tools, a deny or an approval on every
    fifth, each naming a rule; quiet-bot's 200, all denies of tool t0 naming "common.rule"
    (which busy-bot names 1,800 times). Statistics gathered."""
    busy, quiet = AgentFactory(name="busy-bot"), AgentFactory(name="quiet-bot")
    batch = Batch.objects.create(agent=busy, key_id="k", body=b"", record_count=0, byte_count=0)
    insert_january_events(
        "SELECT gen_random_uuid(), CASE WHEN n %% 100 = 0 THEN %s ELSE %s END, 'k', 's-' || (n / 20), n, "
        "'decision', timestamptz '2026-01-01' + n * interval '2 minutes', "
        "CASE WHEN n %% 100 = 0 THEN 't0' ELSE 't' || (n %% 50) END, "
        "CASE WHEN n %% 10 = 0 THEN 'deny' WHEN n %% 10 = 5 THEN 'require_approval' ELSE 'allow' END, "
        "CASE WHEN n %% 10 = 0 THEN '[\"common.rule\"]' WHEN n %% 10 = 5 THEN '[\"ask.rule\"]' ELSE '[]' END::jsonb, "
        "'{}', '[]', '', md5(n::text), '\\x00', %s, now() FROM generate_series(1, %s) AS n",
        [quiet.pk, busy.pk, batch.pk, EVENTS],
    )
    return busy, quiet


def _search(params: str):
    """The query the API builds, in the console's order (EventOrdering)."""
    ordering = by_rule_key(["-time", "-id"]) if "rule=" in params else ["-time", "-id"]
    return AuditEventFilter(QueryDict(params), queryset=AuditEvent.objects.all()).qs.order_by(*ordering)


def _plan(params: str) -> str:
    return _search(params)[:50].explain()


@pytest.mark.parametrize(
    ("params", "index", "conditions"),
    [
        # quiet-bot never calls t7: no entry of the index, where (agent_id, time) read its 200 events.
        ("agent=quiet-bot&tool=t7", "agent_tool", ("agent_id =", "(tool)::text =")),
        ("agent=busy-bot&tool=t0", "agent_tool", ("agent_id =", "(tool)::text =")),
        ("agent=quiet-bot&effect=require_approval", "agent_effect", ("agent_id =", "(effect)::text =")),
        ("agent=busy-bot&effect=deny", "agent_effect", ("agent_id =", "(effect)::text =")),
        (
            "tool=t0&effect=deny&time_after=2026-01-03T00:00:00Z&time_before=2026-01-10T00:00:00Z",
            "tool_effect",
            ("(tool)::text =", "(effect)::text =", '"time" >=', '"time" <'),
        ),
    ],
)
def test_two_filters_read_an_index_of_both(crowd, params, index, conditions):
    """The month holding the events is searched by the index of both filters, both in its
    condition. (Read newest first and stopped after the page at scale; at this size the
    planner may rightly sort the few matches: the bench shows the rest.)"""
    plan = _plan(params)
    scan = re.search(rf"Scan (?:Backward )?(?:using|on) audit_event_{index}{MONTH}.*\n\s+Index Cond: (.*)", plan)
    assert scan, plan
    assert all(condition in scan[1] for condition in conditions), plan
    assert f"Seq Scan on audit_auditevent{MONTH}" not in plan, plan
    # The agent by its id, a constant (filter_agent): not a loop over the agent table.
    assert "identity_agent" not in plan, plan


def test_an_agents_events_naming_a_rule_read_its_events_naming_any(crowd):
    """An agent and a rule: that agent's events naming a rule (the partial index), each
    looked up in the rule table, not the rule's 2,000 rows each fetching its event to check
    the agent."""
    for params in ("agent=quiet-bot&rule=common.rule", "agent=quiet-bot&rule=ask.rule"):
        plan = _plan(params)
        scan = re.search(rf"Scan (?:Backward )?using audit_event_agent_rules{MONTH} .*\n\s+Index Cond: (.*)", plan)
        assert scan and "agent_id =" in scan[1], plan
        assert f"Seq Scan on audit_auditevent{MONTH}" not in plan, plan
        # The count the page shows counts these too (not the rule rows alone: an agent is given).
        count_plan = _search(params).order_by()[:10_001].explain()
        assert f"audit_event_agent_rules{MONTH}" in count_plan, count_plan
    assert _search("agent=quiet-bot&rule=common.rule").count() == 200
    assert _search("agent=quiet-bot&rule=ask.rule").count() == 0
    assert _search("agent=busy-bot&rule=common.rule").count() == 1_800


# Hostile data, through the API, against the plain query.
LONG_RULE = "r" * 300  # past the rule table's 200 bytes: keyed by its digest
TOOLS = ["refund", "ticket'; DROP TABLE x; --", "ünï-😀", "t" * 200, "%", "two words"]


def _console_ids(client, **query) -> list[int]:
    ids, offset = [], 0
    while True:
        page = client.get("/api/v1/audit/events/", {**query, "ordering": "-time,-id", "limit": 1000,
                                                    "offset": offset}).json()
        ids += [event["id"] for event in page["results"]]
        if not page["next"]:
            return ids
        offset += 1000


def _plain(where: str, params: list) -> list[int]:
    """The events matching `where` (over e and a, the agent), as one plain query finds them."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT e.id FROM audit_auditevent e JOIN identity_agent a ON a.id = e.agent_id WHERE {where} "
            "ORDER BY e.time DESC, e.id DESC",
            params,
        )
        return [row[0] for row in cursor.fetchall()]


@pytest.fixture
def two_agents(ship, signer):
    """billing-bot calls every hostile tool (allowed, denied, held; rules short and long);
    lurker-bot calls only "refund", denied by the long rule, and never names "rule-1"."""
    lurker = AgentIdentity.create("lurker-bot", "sec@example.com", ["read:*"])
    register(lurker)
    records = []
    for i, tool in enumerate(TOOLS):
        with signer.session(session_id=f"billing-{i}") as session:
            for effect, rules in (("allow", []), ("deny", ["rule-1", LONG_RULE]), ("require_approval", ["rule-1"])):
                records.append(session.intent(tool, {"n": i}))
                records.append(session.decision(effect, reasons=[{"rule": r, "message": "m", "controls": []}
                                                                 for r in rules]))
                records.append(session.result("r"))
            records.append(session.output("done"))
    assert ship(records).status_code == 202
    lurking = ActionSigner(lurker)
    with lurking.session(session_id="lurker-1") as session:
        lurked = [session.intent("refund", {}),
                  session.decision("deny", reasons=[{"rule": LONG_RULE, "message": "m", "controls": []}]),
                  session.output("no")]
    assert ship(lurked, who=lurker).status_code == 202
    assert AuditEvent.objects.filter(agent__name="lurker-bot").count() == 3


def test_combined_searches_find_what_the_plain_query_finds(two_agents, auditor_client):
    for agent in ("billing-bot", "lurker-bot", "nobody-bot"):
        for tool in [*TOOLS, "never-called"]:
            found = _console_ids(auditor_client, agent=agent, tool=tool)
            assert found == _plain("a.name = %s AND e.tool = %s", [agent, tool]), (agent, tool)
        for effect in ("allow", "deny", "require_approval"):
            found = _console_ids(auditor_client, agent=agent, effect=effect)
            assert found == _plain("a.name = %s AND e.effect = %s", [agent, effect]), (agent, effect)
        for rule in ("rule-1", LONG_RULE, LONG_RULE + "x", "absent"):
            found = _console_ids(auditor_client, agent=agent, rule=rule)
            assert found == _plain("a.name = %s AND e.rule_ids @> jsonb_build_array(%s::text)", [agent, rule])
    for tool in TOOLS:
        for effect in ("deny", "require_approval"):
            found = _console_ids(auditor_client, tool=tool, effect=effect, time_after="2000-01-01T00:00:00Z")
            assert found == _plain("e.tool = %s AND e.effect = %s", [tool, effect]), (tool, effect)
    # Spot checks: the hostile cases are not vacuous.
    assert _console_ids(auditor_client, agent="lurker-bot", tool="ünï-😀") == []
    assert len(_console_ids(auditor_client, agent="lurker-bot", rule=LONG_RULE)) == 1
    assert _console_ids(auditor_client, agent="lurker-bot", rule="rule-1") == []
    assert len(_console_ids(auditor_client, agent="billing-bot", rule=LONG_RULE)) == len(TOOLS)
    assert len(_console_ids(auditor_client, agent="billing-bot", tool="t" * 200, effect="deny")) == 1
    page = auditor_client.get("/api/v1/audit/events/", {"agent": "lurker-bot", "rule": LONG_RULE}).json()
    assert page["count"] == 1


def test_the_indexes_are_on_every_partition_named_after_the_parents(crowd):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'audit_auditevent'::regclass"
        )
        parts = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = ANY(%s)", [parts])
        names = {row[0] for row in cursor.fetchall()}
    for part in parts:
        suffix = part.removeprefix("audit_auditevent")
        for index in ("agent_tool", "agent_effect", "tool_effect", "agent_rules"):
            assert f"audit_event_{index}{suffix}" in names, (part, index)
