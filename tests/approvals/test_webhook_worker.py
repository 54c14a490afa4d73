"""Webhook delivery through a real Celery worker on Redis: signed (HMAC-SHA256), with a
Slack-compatible body, retried after a failure, every attempt in the delivery log."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time

import pytest

from controlplane.approvals.models import WebhookDelivery
from controlplane.celery import app as celery_app
from tests.approvals.conftest import file_signed, request_body
from tests.approvals.test_api import client_of
from tests.audit.test_worker import kill, start_worker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []
    fail_first = 0

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        failing = type(self).fail_first > 0
        type(self).fail_first -= 1
        self.send_response(503 if failing else 200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def worker(tmp_path):
    celery_app.conf.task_always_eager = False  # the autouse inline_tasks fixture restores it
    process = start_worker("celery", tmp_path / "worker.log")
    yield process
    kill(process)


def test_webhook_is_signed_slack_compatible_retried_and_logged(identity, people, worker):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    Receiver.received, Receiver.fail_first = [], 1
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        secret = "s3cret-s3cret-s3cret"
        created = client_of(people.admin).post(
            "/api/v1/approval-webhooks/", {"name": "slack", "url": f"http://127.0.0.1:{server.server_port}/hook",
                                           "secret": secret}, format="json")
        assert created.status_code == 201 and "secret" not in created.json()
        assert file_signed(identity, request_body(identity)).status_code == 201
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            delivery = WebhookDelivery.objects.filter(delivered_at__isnull=False).first()
            if delivery is not None:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"not delivered: {list(WebhookDelivery.objects.values())}")
        assert delivery.attempts == 2 and delivery.status_code == 200  # a 503 first, then the retry
        assert len(Receiver.received) == 2
        headers, body = Receiver.received[-1]
        stamp = headers["X-Warden-Timestamp"]
        expected = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert headers["X-Warden-Signature"] == f"sha256={expected}"
        payload = json.loads(body)
        assert "pay-bot" in payload["text"] and payload["blocks"][0]["type"] == "section"
        assert payload["warden"]["event"] == "requested" and "4242424242424242" not in body.decode()
        log = client_of(people.admin).get(f"/api/v1/approval-webhooks/{created.json()['id']}/deliveries/").json()
        assert log["count"] == 1  # paged like every list, as the schema says
        log = log["results"]
        assert log[0]["attempts"] == 2 and log[0]["status_code"] == 200 and log[0]["delivered_at"]
    finally:
        server.shutdown()
