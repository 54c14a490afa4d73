"""Retention that removes events row by row (agents with a shorter retention, the default
partition) removes their rule-search rows (audit_auditevent_rule) with them, and only theirs;
only the retention role can, through `warden_audit_retention_delete` (migration 0010). Real
PostgreSQL, as the superuser the tests run as and as the database roles."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from controlplane.audit import checkpoints, partitions, retention
from controlplane.audit.models import AuditEvent, EventRule, RetentionPolicy
from tests.audit.conftest import register, sign_session
from tests.audit.test_database_roles import connected_as, refused, roles  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="the rule table is PostgreSQL's"
    ),
]

LONG = "r" * 3000  # keyed by its digest in the rule table
RETENTION_CALL = "SELECT warden_audit_retention_delete(%s::bigint[], '{}', '{}')"


def _rule_rows_of(event_ids) -> list[tuple[str, int]]:
    return sorted(EventRule.objects.filter(event_id__in=list(event_ids)).values_list("rule_id", "event_id"))


@pytest.fixture
def two_agents(ship, signer):
    """billing-bot (default retention) and archive-bot (kept 1,000 days), both with events
    naming a short rule and a long one; all checkpointed."""
    ship(sign_session(signer, "short") + sign_session(signer, "long", rule=LONG))
    archive = AgentIdentity.create("archive-bot", "ops@example.com", ["read:tickets"])
    agent = register(archive).agent
    RetentionPolicy.objects.create(agent=agent, days=1000)
    ship(sign_session(ActionSigner(archive), "kept", rule=LONG), who=archive)
    checkpoints.create_checkpoints()
    billing = list(AuditEvent.objects.filter(agent__name="billing-bot").values_list("id", flat=True))
    kept = list(AuditEvent.objects.filter(agent=agent).values_list("id", flat=True))
    assert len(_rule_rows_of(billing)) == 2 and len(_rule_rows_of(kept)) == 1
    return billing, kept


def test_row_by_row_retention_removes_the_events_rule_rows_and_no_others(two_agents):
    billing, kept = two_agents
    now = timezone.now()
    with connection.cursor() as cursor:  # the events' month is recent: not dropped whole
        months = [name for name, _, _ in partitions.monthly_partitions(cursor, "audit_auditevent")]

    made = retention.apply_retention(now=now + timedelta(days=400))

    assert sum(c.event_count for c in made) == len(billing)
    assert not AuditEvent.objects.filter(pk__in=billing).exists()
    assert _rule_rows_of(billing) == []  # before 0010: both stayed behind
    assert AuditEvent.objects.filter(pk__in=kept).count() == len(kept)
    kept_decision = AuditEvent.objects.get(pk__in=kept, kind="decision").pk
    assert _rule_rows_of(kept) == [(partitions.rule_key(LONG), kept_decision)]
    with connection.cursor() as cursor:
        assert [name for name, _, _ in partitions.monthly_partitions(cursor, "audit_auditevent")] == months


def test_only_the_retention_role_removes_rule_rows_and_only_with_their_events(roles, two_agents):  # noqa: F811
    billing, kept = two_agents
    decision = AuditEvent.objects.get(agent__name="billing-bot", session_id="short", kind="decision")
    with connected_as(roles.app) as app:
        assert "permission denied" in refused(app, "DELETE FROM audit_auditevent_rule WHERE event_id = %s",
                                              [decision.pk])
        assert "permission denied for function" in refused(app, RETENTION_CALL, [[decision.pk]])
    with connected_as(roles.retention) as job:
        # Not directly, only through the function (which names what it removes in checkpoints).
        assert "permission denied" in refused(job, "DELETE FROM audit_auditevent_rule WHERE event_id = %s",
                                              [decision.pk])
        assert job.execute(RETENTION_CALL, [[decision.pk]]).fetchone() == ([1, 0, 0],)
    assert _rule_rows_of([decision.pk]) == []
    assert len(_rule_rows_of(billing)) == 1 and len(_rule_rows_of(kept)) == 1  # the others' stay
