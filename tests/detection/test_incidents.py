"""Incidents: clocks from the awareness time by regulation, reclassification, SOC 2 triage
states with a timeline, and reminders before a clock runs out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from controlplane.core.exceptions import ConflictError, InvalidInput
from controlplane.detection.models import IncidentClock
from controlplane.detection.services import incidents
from tests.accounts.factories import UserFactory
from tests.identity.factories import AgentFactory

pytestmark = pytest.mark.django_db
AWARE = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)


def due(incident) -> dict[str, datetime]:
    return dict(incident.clocks.values_list("regime", "due_at"))


@pytest.mark.parametrize("case, days", [("general", 15), ("death", 10), ("widespread", 2)])
def test_ai_act_article_73_clock_counts_from_awareness(admin_user, case, days):
    incident = incidents.open_incident(title="t", severity="high", by=admin_user, aware_at=AWARE, ai_act_case=case)
    assert due(incident) == {"eu_ai_act_art73": AWARE + timedelta(days=days)}
    assert f"73(" in incident.clocks.get().basis


@pytest.mark.parametrize("role, regime", [("covered_entity", "hipaa_164_404"), ("business_associate", "hipaa_164_410")])
def test_hipaa_clocks_give_sixty_days_from_discovery(admin_user, role, regime):
    incident = incidents.open_incident(title="t", severity="high", by=admin_user, aware_at=AWARE, hipaa_role=role)
    assert due(incident) == {regime: AWARE + timedelta(days=60)}


def test_an_incident_that_is_not_reportable_has_no_clocks(admin_user):
    assert due(incidents.open_incident(title="t", severity="low", by=admin_user, aware_at=AWARE)) == {}


def test_reclassifying_moves_open_clocks_and_keeps_met_ones(admin_user):
    incident = incidents.open_incident(title="t", severity="high", by=admin_user, aware_at=AWARE,
                                       ai_act_case="general", hipaa_role="covered_entity")
    incidents.mark_clock_met(incident, regime="hipaa_164_404", by=admin_user, at=AWARE + timedelta(days=3))
    incidents.update_incident(incident, by=admin_user, ai_act_case="death", hipaa_role="none")
    assert due(incident) == {"eu_ai_act_art73": AWARE + timedelta(days=10), "hipaa_164_404": AWARE + timedelta(days=60)}
    assert incident.clocks.get(regime="hipaa_164_404").met_at == AWARE + timedelta(days=3)
    incidents.update_incident(incident, by=admin_user, ai_act_case="none")
    assert set(due(incident)) == {"hipaa_164_404"}
    assert incident.timeline.filter(kind="note", message__contains="ai_act_case").count() == 2


def test_a_clock_met_late_says_so_and_cannot_be_met_twice(admin_user):
    incident = incidents.open_incident(title="t", severity="high", by=admin_user, aware_at=AWARE,
                                       ai_act_case="widespread")
    incidents.mark_clock_met(incident, regime="eu_ai_act_art73", by=admin_user, at=AWARE + timedelta(days=3))
    assert incident.timeline.filter(message__contains="met (late)").exists()
    with pytest.raises(ConflictError):
        incidents.mark_clock_met(incident, regime="eu_ai_act_art73", by=admin_user)
    with pytest.raises(InvalidInput) as missing:
        incidents.mark_clock_met(incident, regime="hipaa_164_404", by=admin_user)
    assert missing.value.field == "regime"


def test_a_clock_cannot_be_met_before_awareness_and_awareness_cannot_be_in_the_future(admin_user):
    incident = incidents.open_incident(title="t", severity="high", by=admin_user, aware_at=AWARE, ai_act_case="general")
    with pytest.raises(InvalidInput) as early:
        incidents.mark_clock_met(incident, regime="eu_ai_act_art73", by=admin_user, at=AWARE - timedelta(hours=1))
    assert early.value.field == "at"
    with pytest.raises(InvalidInput) as future:
        incidents.open_incident(title="t", severity="high", by=admin_user, aware_at=timezone.now() + timedelta(days=1))
    assert future.value.field == "aware_at"


def test_status_moves_through_soc2_triage_states_on_the_timeline(admin_user):
    incident = incidents.open_incident(title="t", severity="high", by=admin_user)
    assert incident.status == "triage"
    for status in ("containment", "remediation", "recovery", "closed"):
        incidents.set_incident_status(incident, status=status, by=admin_user, note=f"now {status}")
    incident.refresh_from_db()
    assert incident.closed_at is not None
    assert list(incident.timeline.filter(kind="status").values_list("message", flat=True)) == [
        "triage → containment: now containment", "containment → remediation: now remediation",
        "remediation → recovery: now recovery", "recovery → closed: now closed",
    ]
    with pytest.raises(ConflictError):
        incidents.set_incident_status(incident, status="closed", by=admin_user)
    with pytest.raises(InvalidInput):
        incidents.set_incident_status(incident, status="forgotten", by=admin_user)


def test_sessions_and_actions_build_the_timeline(admin_user):
    agent = AgentFactory(name="invoice-bot")
    incident = incidents.open_incident(title="t", severity="high", by=admin_user)
    incidents.link_session(incident, agent=agent, session_id="sess-1", by=admin_user)
    with pytest.raises(ConflictError):
        incidents.link_session(incident, agent=agent, session_id="sess-1", by=admin_user)
    incidents.record_action(incident, text="rotated the agent's key", by=admin_user)
    kinds = list(incident.timeline.values_list("kind", "by_name"))
    assert kinds == [("opened", admin_user.username), ("session", admin_user.username), ("action", admin_user.username)]
    assert list(incident.agents.all()) == [agent]


def test_reminders_go_to_the_owner_once_per_lead_time_and_when_overdue(admin_user, settings):
    settings.WARDEN_DETECTION_REMINDER_HOURS = ("72", "24", "4")
    owner = UserFactory(username="oncall", email="oncall@example.com")
    aware = timezone.now() - timedelta(hours=1)
    incident = incidents.open_incident(title="Leak", severity="critical", by=admin_user, aware_at=aware, owner=owner,
                                       ai_act_case="widespread")  # due in 47 h: inside the 72 h lead already
    clock = incident.clocks.get()
    assert incidents.send_clock_reminders() == [clock.pk]
    assert incidents.send_clock_reminders() == []  # the 72 h lead is reminded once
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["oncall@example.com"]
    assert "runs out in 47.0 h" in mail.outbox[0].body and "Art. 73(3)" in mail.outbox[0].body
    assert incidents.send_clock_reminders(now=clock.due_at - timedelta(hours=3)) == [clock.pk]  # 24 h and 4 h at once
    assert len(mail.outbox) == 2
    assert incidents.send_clock_reminders(now=clock.due_at + timedelta(hours=2)) == [clock.pk]
    assert "ran out 2.0 h ago" in mail.outbox[2].body
    assert IncidentClock.objects.get().reminders_sent == [72, 24, 4, 0]
    assert incident.timeline.filter(kind="clock", message__startswith="reminder").count() == 3


def test_met_clocks_and_closed_incidents_get_no_reminders(admin_user, settings):
    settings.WARDEN_DETECTION_ALERT_EMAILS = ("soc@example.com",)
    aware = timezone.now() - timedelta(days=14, hours=12)
    met = incidents.open_incident(title="a", severity="high", by=admin_user, aware_at=aware, ai_act_case="general")
    incidents.mark_clock_met(met, regime="eu_ai_act_art73", by=admin_user)
    closed = incidents.open_incident(title="b", severity="high", by=admin_user, aware_at=aware, ai_act_case="general")
    incidents.set_incident_status(closed, status="closed", by=admin_user)
    running = incidents.open_incident(title="c", severity="high", by=admin_user, aware_at=aware, ai_act_case="general")
    assert incidents.send_clock_reminders() == [running.clocks.get().pk]
    assert mail.outbox[0].to == ["soc@example.com"]  # no owner: the alert recipients


def test_detection_evidence_counts_alerts_incidents_and_clocks_for_compliance(admin_user):
    from controlplane.detection.selectors import evidence_of_detection

    on_time = incidents.open_incident(title="a", severity="high", by=admin_user, aware_at=AWARE, ai_act_case="general")
    incidents.mark_clock_met(on_time, regime="eu_ai_act_art73", by=admin_user, at=AWARE + timedelta(days=2))
    incidents.open_incident(title="b", severity="high", by=admin_user, aware_at=AWARE, ai_act_case="widespread")
    evidence = evidence_of_detection()
    assert (evidence["incidents"], evidence["clocks"], evidence["clocks_met_in_time"], evidence["clocks_missed"]) == (
        2, 2, 1, 1)
    assert evidence_of_detection(since=timezone.now() + timedelta(days=1))["incidents"] == 0
