"""The detection API: roles, the alert life cycle over HTTP, incidents with clocks, response
policies, baselines, and hostile input answered with a 400 naming the field."""

from __future__ import annotations

import pytest

from controlplane.changelog.models import ObjectChange
from controlplane.detection.models import Alert
from controlplane.detection.services import incidents
from controlplane.detection.services.scanning import run_detection
from tests.bundles.factories import environment
from tests.detection.conftest import known_traffic

pytestmark = pytest.mark.django_db
API = "/api/v1/detection"


@pytest.fixture
def alert(signed_agent, ship) -> Alert:
    bot = signed_agent()
    ship(bot, bot.calls("normal", known_traffic(25)))
    run_detection()
    ship(bot, bot.calls("exfil", [("http_request", {"url": f"https://drop.evil.example/{i}"}) for i in range(5)]))
    run_detection()
    return Alert.objects.get()


def test_every_role_reads_alerts_with_evidence_links(any_role_client, alert):
    body = any_role_client.get(f"{API}/alerts/?state=open&severity=medium&agent=invoice-bot").json()
    assert body["count"] == 1
    (row,) = body["results"]
    assert row["agent"] == "invoice-bot" and row["detector"] == "new_destination" and row["summary"] == alert.summary
    assert f"/api/v1/audit/events/?agent=invoice-bot&session_id=exfil" in row["evidence"]
    assert f"/api/v1/audit/events/?record_id={alert.record_ids[0]}" in row["evidence"]
    detail = any_role_client.get(f"{API}/alerts/{alert.pk}/").json()
    assert detail["deliveries"] == [] and detail["baseline"]["known_destinations"] == 1


def test_anonymous_callers_get_401(anonymous_client, alert):
    assert anonymous_client.get(f"{API}/alerts/").status_code == 401
    assert anonymous_client.post(f"{API}/alerts/{alert.pk}/acknowledge/").status_code == 401


@pytest.mark.parametrize("role, code", [("admin", 200), ("approver", 200), ("auditor", 403), ("policy_author", 403)])
def test_only_responders_change_an_alert(token_client, alert, role, code):
    assert token_client(role).post(f"{API}/alerts/{alert.pk}/acknowledge/", {"note": "on it"},
                                   format="json").status_code == code


def test_the_life_cycle_records_who_and_when(admin_client, alert):
    acknowledged = admin_client.post(f"{API}/alerts/{alert.pk}/acknowledge/", {"note": "looking"}, format="json")
    assert acknowledged.json()["state"] == "acknowledged"
    assert acknowledged.json()["acknowledged_by"] == admin_client.user.username
    assert admin_client.post(f"{API}/alerts/{alert.pk}/acknowledge/", {}, format="json").status_code == 409
    resolved = admin_client.post(f"{API}/alerts/{alert.pk}/resolve/", {"note": "blocked"}, format="json").json()
    assert (resolved["state"], resolved["closed_by"], resolved["note"]) == ("resolved", admin_client.user.username,
                                                                           "blocked")
    again = admin_client.post(f"{API}/alerts/{alert.pk}/false-positive/", {}, format="json")
    assert again.status_code == 409 and "state" in again.json()
    messages = list(ObjectChange.objects.filter(object_id=str(alert.pk), user=admin_client.user)
                    .order_by("time").values_list("message", flat=True))
    assert messages == ["acknowledged: looking", "resolved: blocked"]


def test_inbox_counts_open_alerts_by_severity(auditor_client, admin_client, alert):
    assert auditor_client.get(f"{API}/alerts/inbox/").json() == {
        "open": 1, "acknowledged": 0, "latest_id": alert.pk,
        "by_severity": {"low": 0, "medium": 1, "high": 0, "critical": 0}}
    admin_client.post(f"{API}/alerts/{alert.pk}/false-positive/", {}, format="json")
    assert auditor_client.get(f"{API}/alerts/inbox/").json()["open"] == 0


@pytest.mark.parametrize("note, message", [
    ("\x00", "NUL"), ("\ud800", "surrogate"), (["a list"], "Not a valid string"), ({"x": 1}, "Not a valid string"),
    ("n" * 5001, "5000"),
])
def test_hostile_notes_are_refused_naming_the_field(admin_client, alert, note, message):
    import json as json_module

    body = json_module.dumps({"note": note}).encode()  # json keeps a lone surrogate as \\ud800
    response = admin_client.generic("POST", f"{API}/alerts/{alert.pk}/acknowledge/", body,
                                    content_type="application/json")
    assert response.status_code == 400
    assert message in str(response.json()["note"])
    alert.refresh_from_db()
    assert alert.state == "open"


@pytest.mark.parametrize("path", ["alerts/999999/", "alerts/abc/", "incidents/999999/", "baselines/ghost/"])
def test_unknown_ids_are_404(admin_client, path):
    assert admin_client.get(f"{API}/{path}").status_code == 404


def test_an_incident_opened_from_an_alert_carries_clocks_and_timeline(admin_client, alert):
    response = admin_client.post(f"{API}/alerts/{alert.pk}/incident/",
                                 {"ai_act_case": "death", "hipaa_role": "covered_entity"}, format="json")
    assert response.status_code == 201
    incident = response.json()
    assert incident["alerts"] == [alert.pk] and incident["agents"] == ["invoice-bot"]
    assert {c["regime"]: c["basis"][:20] for c in incident["clocks"]} == {
        "eu_ai_act_art73": "EU AI Act Art. 73(4)", "hipaa_164_404": "HIPAA 45 CFR 164.404"}
    assert all(c["remaining_seconds"] > 0 for c in incident["clocks"])
    assert [e["kind"] for e in incident["timeline"]][:2] == ["opened", "clock"]
    assert any(e["kind"] == "session" and e["session_id"] == "exfil" for e in incident["timeline"])
    # Asking again returns the same open incident.
    assert admin_client.post(f"{API}/alerts/{alert.pk}/incident/", {}, format="json").json()["id"] == incident["id"]


def test_incidents_by_hand_with_owner_status_actions_and_met_clocks(admin_client, token_client, alert):
    approver = token_client("approver")
    created = approver.post(f"{API}/incidents/", {
        "title": "Refunds issued twice", "severity": "high", "owner": approver.user.username,
        "ai_act_case": "general", "alerts": [alert.pk], "aware_at": "2026-11-01T08:00:00+02:00"}, format="json")
    assert created.status_code == 201, created.json()
    incident = created.json()
    assert incident["aware_at"] == "2026-11-01T06:00:00Z" and incident["owner"] == approver.user.username
    assert incident["clocks"][0]["due_at"] == "2026-11-16T06:00:00Z"
    url = f"{API}/incidents/{incident['id']}"
    assert approver.post(f"{url}/status/", {"status": "containment", "note": "suspended"},
                         format="json").json()["status"] == "containment"
    assert approver.post(f"{url}/actions/", {"text": "rotated keys"}, format="json").status_code == 201
    assert approver.post(f"{url}/sessions/", {"agent": "invoice-bot", "session_id": "normal"},
                         format="json").status_code == 201
    met = approver.post(f"{url}/clock-met/", {"regime": "eu_ai_act_art73", "at": "2026-11-10T10:00:00Z"}, format="json")
    assert met.json()["met_at"] == "2026-11-10T10:00:00Z"
    patched = approver.patch(f"{url}/", {"severity": "critical", "hipaa_role": "business_associate"}, format="json")
    assert {c["regime"] for c in patched.json()["clocks"]} == {"eu_ai_act_art73", "hipaa_164_410"}
    assert token_client("auditor").post(f"{url}/actions/", {"text": "x"}, format="json").status_code == 403
    listed = admin_client.get(f"{API}/incidents/?status=containment&agent=invoice-bot").json()
    assert [i["id"] for i in listed["results"]] == [incident["id"]]


@pytest.mark.parametrize("body, field", [
    ({"title": "x", "severity": "apocalyptic"}, "severity"),
    ({"title": "", "severity": "high"}, "title"),
    ({"title": "x\x00", "severity": "high"}, "title"),
    ({"title": "x", "severity": "high", "aware_at": "2026-13-01T00:00:00Z"}, "aware_at"),
    ({"title": "x", "severity": "high", "aware_at": "2999-01-01T00:00:00Z"}, "aware_at"),
    ({"title": "x", "severity": "high", "ai_act_case": "maybe"}, "ai_act_case"),
    ({"title": "x", "severity": "high", "owner": "nobody"}, "owner"),
    ({"title": "x", "severity": "high", "alerts": [987654]}, "alerts"),
    ({"title": "x", "severity": "high", "alerts": "1"}, "alerts"),
    ({"title": "x", "severity": "high", "agents": ["ghost"]}, "agents"),
    ({"title": ["x"], "severity": "high"}, "title"),
])
def test_bad_incidents_are_refused_naming_the_field(admin_client, body, field):
    response = admin_client.post(f"{API}/incidents/", body, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()


def test_clock_and_link_errors_name_the_field(admin_client, admin_user, alert):
    incident = incidents.open_incident(title="t", severity="low", by=admin_user)
    url = f"{API}/incidents/{incident.pk}"
    assert "regime" in admin_client.post(f"{url}/clock-met/", {"regime": "eu_ai_act_art73"}, format="json").json()
    assert "regime" in admin_client.post(f"{url}/clock-met/", {"regime": "gdpr_art33"}, format="json").json()
    assert admin_client.post(f"{url}/alerts/", {"alert": alert.pk}, format="json").status_code == 200
    assert admin_client.post(f"{url}/alerts/", {"alert": alert.pk}, format="json").status_code == 409
    assert "alert" in admin_client.post(f"{url}/alerts/", {"alert": "x"}, format="json").json()
    assert "agent" in admin_client.post(f"{url}/sessions/", {"agent": "ghost", "session_id": "s"}, format="json").json()
    too_long = admin_client.post(f"{url}/sessions/", {"agent": "invoice-bot", "session_id": "s" * 201}, format="json")
    assert "session_id" in too_long.json()


def test_response_policies_are_admin_only_and_validated(admin_client, token_client, admin_user):
    environment("prod", by=admin_user)
    body = {"environment": "prod", "risk_tiers": ["high", "limited"], "min_severity": "high"}
    assert token_client("approver").post(f"{API}/response-policies/", body, format="json").status_code == 403
    created = admin_client.post(f"{API}/response-policies/", body, format="json")
    assert created.status_code == 201 and created.json()["risk_tiers"] == ["high", "limited"]
    assert admin_client.get(f"{API}/response-policies/prod/").json()["action"] == "suspend"
    changed = admin_client.put(f"{API}/response-policies/prod/", {**body, "enabled": False}, format="json")
    assert changed.json()["enabled"] is False
    moved = admin_client.put(f"{API}/response-policies/prod/", {**body, "environment": "dev"}, format="json")
    assert moved.status_code == 400 and "environment" in moved.json()
    for bad, field in [({**body, "environment": "nowhere"}, "environment"), ({**body, "risk_tiers": []}, "risk_tiers"),
                       ({**body, "risk_tiers": ["ultra"]}, "risk_tiers"), ({**body, "min_severity": 3}, "min_severity")]:
        response = admin_client.post(f"{API}/response-policies/", bad, format="json")
        assert response.status_code == 400 and field in response.json(), (bad, response.json())
    assert admin_client.delete(f"{API}/response-policies/prod/").status_code == 204
    assert ObjectChange.objects.filter(object_type__model="responsepolicy").count() == 3


def test_baselines_show_what_is_normal_for_an_agent(auditor_client, alert):
    baseline = auditor_client.get(f"{API}/baselines/invoice-bot/").json()
    assert baseline["known_tools"] == ["http_request"] and baseline["known_destinations"] == ["host:api.bank.example"]
    assert baseline["events"] == 60 and baseline["source"] == "audit" and len(baseline["hour_of_day"]) == 24


def test_the_admin_shows_detection_read_only(client, alert):
    from tests.accounts.factories import UserFactory

    superuser = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(superuser)
    assert client.get("/admin/detection/alert/").status_code == 200
    assert client.get(f"/admin/detection/alert/{alert.pk}/change/").status_code == 200
    assert client.get("/admin/detection/alert/add/").status_code == 403
    assert client.post(f"/admin/detection/alert/{alert.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Alert.objects.filter(pk=alert.pk).exists()
    assert client.get("/admin/detection/incident/add/").status_code == 403
