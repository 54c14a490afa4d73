"""A real Celery worker on Redis and PostgreSQL, SIGKILLed in the middle of a large batch:
after a restart every record is stored exactly once."""

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
from rest_framework.test import APIClient

from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from controlplane.audit import ingestion
from controlplane.audit.models import AuditEvent, Batch, BatchStatus, QuarantinedRecord
from controlplane.core.tasks import send_now
from tests.audit.conftest import register, upload

REPO = Path(__file__).resolve().parents[2]
RECORDS = 8000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")),
        reason="needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL): CI runs it; the embedded default has no broker",
    ),
]


def database_url() -> str:
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def start_worker(queue: str, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": django_settings.REDIS_URL,
        "WARDEN_AUDIT_QUEUE": queue,
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        str(Path(sys.executable).with_name("celery")), "-A", "controlplane", "worker", "-Q", queue,
        "-c", "1", "-l", "info", "-n", f"{queue}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]
    handle = open(log, "ab")  # noqa: SIM115 - the worker writes to it until killed
    worker = subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
                              start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if b"ready." in log.read_bytes():
            return worker
        if worker.poll() is not None:
            raise AssertionError(f"the worker exited: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    raise AssertionError(f"the worker did not start: {log.read_text()[-2000:]}")


def kill(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)  # the main process and its pool child, no goodbye
        worker.wait(timeout=10)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_batch_loses_nothing_and_duplicates_nothing(settings, tmp_path):
    queue = f"warden-audit-test-{uuid.uuid4().hex[:8]}"
    settings.WARDEN_AUDIT_QUEUE = queue
    identity = AgentIdentity.create("billing-bot", "payments@example.com")
    register(identity)
    signer = ActionSigner(identity)
    records = []
    for n in range(RECORDS // 4):
        with signer.session(session_id=f"s{n % 40}") as session:
            records.append(session.intent("refund", {"ticket": n, "password": "p"}))
            records.append(session.decision("allow", reasons=[{"rule": "r", "message": "m", "controls": []}]))
            records.append(session.result("ok"))
            records.append(session.output(n))

    log = tmp_path / "worker.log"
    worker = start_worker(queue, log)
    try:
        response = upload(APIClient(), identity, records)  # commits: transactional test
        assert response.status_code == 202, response.content
        batch_id = response.json()["batch_id"]

        wait_for(lambda: Batch.objects.get(pk=batch_id).attempts >= 1, 30, "the worker to start the batch")
        time.sleep(0.5)  # well inside the batch: verifying 8,000 signatures takes seconds
        kill(worker)
        batch = Batch.objects.get(pk=batch_id)
        assert batch.status == BatchStatus.PENDING, "the worker finished before it was killed: not a crash test"
        assert AuditEvent.objects.count() == 0  # nothing half-stored

        worker = start_worker(queue, log)
        # The killed task stays unacknowledged in Redis until its visibility timeout; the
        # beat job that re-enqueues stale batches brings it back now.
        assert ingestion.requeue_stale_batches(older_than_seconds=0) == [batch_id]
        wait_for(lambda: Batch.objects.get(pk=batch_id).status == BatchStatus.VERIFIED, 120, "verification")

        batch.refresh_from_db()
        assert batch.attempts >= 2
        assert (batch.event_count, batch.quarantined_count) == (RECORDS, 0)
        assert AuditEvent.objects.count() == RECORDS
        stored = set(AuditEvent.objects.values_list("record_id", flat=True))
        assert stored == {uuid.UUID(r["record_id"]) for r in records}
        assert QuarantinedRecord.objects.count() == 0

        # A second delivery of the same task (the old message, redelivered) changes nothing.
        send_now("audit.verify_batch", batch_id, queue=queue)
        time.sleep(1.0)
        assert AuditEvent.objects.count() == RECORDS
    finally:
        kill(worker)
        connection.close()
