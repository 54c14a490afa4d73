"""Continuous monitoring: a regression between reports and an attestation about to expire
become notices on the report, e-mailed to the control's owner and POSTed to the webhook."""

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.utils import timezone

from controlplane.bundles import services as bundle_services
from controlplane.compliance import attestations, monitoring, services
from tests.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def webhook():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def build(d):
    report = services.request_gap_report(framework="hipaa", environment=d.environment, by=d.admin)
    services.build_gap_report(report.pk)
    report.refresh_from_db()
    return report


def test_a_regression_and_an_expiring_attestation_are_notified_by_mail_and_webhook(deployment, settings, webhook):
    url, received = webhook
    settings.WARDEN_COMPLIANCE_WEBHOOK_URL = url
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    d = deployment()
    owner = UserFactory(username="hipaa-owner", email="owner@example.com", roles=["admin"])
    attestations.set_control_owner(framework="hipaa", control_id="164.312(b)", environment=d.environment,
                                   owner=owner, by=d.admin)
    now = timezone.now()
    attestations.record_attestation(
        kind="attestation", framework="hipaa", control_id="164.308(a)(1)(ii)(A)", environment=d.environment,
        period_start=now - timedelta(days=90), period_end=now, statement="Risk analysis 2026 approved.",
        owner=owner, by=d.admin, expires_at=now + timedelta(days=10))
    first = build(d)
    assert [n["kind"] for n in first.diff["notices"]] == ["expiring"]

    bundle_services.update_environment(d.environment, by=d.admin, decision_logging=False)
    d.refresh()
    second = build(d)
    kinds = {(n["kind"], n["control_id"]) for n in second.diff["notices"]}
    assert ("regression", "164.312(b)") in kinds and ("expiring", "164.308(a)(1)(ii)(A)") in kinds

    outcome = monitoring.deliver(second.pk)
    assert outcome == {"emails": 1, "webhook": 204}
    assert "owner@example.com" in mail.outbox[-1].to
    assert "164.312(b) regressed from met to partial" in mail.outbox[-1].body
    assert received[-1]["report"] == str(second.pk)
    assert {n["control_id"] for n in received[-1]["notices"]} >= {"164.312(b)", "164.308(a)(1)(ii)(A)"}
    second.refresh_from_db()
    assert second.diff["notices_delivered"] == {"emails": 1, "webhook": 204}


def test_nothing_to_notify_sends_nothing(deployment, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    d = deployment()
    report = build(d)
    assert "notices" not in report.diff
    assert monitoring.deliver(report.pk) == {"emails": 0, "webhook": None}
    assert mail.outbox == []


def test_the_daily_sweep_is_on_the_beat_timer_and_notifies_each_expiring_item_once(settings, webhook):
    from celery import current_app
    from celery.schedules import crontab

    from controlplane.compliance import tasks
    from tests.bundles.factories import EnvironmentFactory

    entry = current_app.conf.beat_schedule["compliance-sweep-expiring"]
    assert entry["task"] == "compliance.sweep_expiring" and entry["task"] in current_app.tasks
    assert isinstance(entry["schedule"], crontab) and entry["schedule"].hour == {6}  # daily, not weekly

    url, received = webhook
    settings.WARDEN_COMPLIANCE_WEBHOOK_URL = url
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    env = EnvironmentFactory(name="prod")
    owner = UserFactory(username="risk-owner", email="risk@example.com", roles=["admin"])
    now = timezone.now()

    def attest(control_id, days):
        return attestations.record_attestation(
            kind="attestation", framework="hipaa", control_id=control_id, environment=env,
            period_start=now - timedelta(days=90), period_end=now, statement="Reviewed.", owner=owner, by=owner,
            expires_at=now + timedelta(days=days))

    soon = attest("164.308(a)(1)(ii)(A)", 10)
    attest("164.308(a)(1)(ii)(B)", 60)  # outside the 30-day notice
    attestations.revoke_attestation(attest("164.308(a)(1)(ii)(D)", 5), by=owner)  # revoked: nothing to renew

    outcome = tasks.sweep_expiring.apply().get()  # the task the beat entry runs, through Celery
    assert outcome == {"notices": 1, "emails": 1, "webhooks": [204]}
    assert mail.outbox[-1].to == ["risk@example.com"] and "164.308(a)(1)(ii)(A)" in mail.outbox[-1].body
    assert received[-1]["type"] == "compliance.expiring"
    assert [n["attestation"] for n in received[-1]["notices"]] == [str(soon.pk)]

    assert monitoring.sweep_expiring() == {"notices": 0, "emails": 0, "webhooks": []}  # once per item
    assert len(mail.outbox) == 1
