"""The impact preview as it runs in production: queued after the request commits, replayed by
a real Celery worker on Redis and PostgreSQL, progress and result read back from the database."""

from __future__ import annotations

import os
import uuid

import pytest

from controlplane.authoring import previews
from controlplane.authoring.models import ImpactPreview, PreviewStatus
from tests.audit.test_worker import kill, start_worker, wait_for
from tests.authoring.conftest import payment, record_decisions

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")),
        reason="needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL): CI runs it; the embedded default has no broker",
    ),
]


@pytest.mark.django_db(transaction=True)
def test_a_worker_runs_the_preview_and_reports_progress(finance_env, author, tmp_path):
    record_decisions(finance_env, [payment(n) for n in range(200)])
    queue = f"warden-authoring-test-{uuid.uuid4().hex[:8]}"
    worker = start_worker(queue, tmp_path / "worker.log")
    try:
        preview = previews.request_impact_preview(finance_env, by=author, queue=queue)  # commits, then queues
        wait_for(lambda: ImpactPreview.objects.get(pk=preview.pk).status == PreviewStatus.DONE, 120, "the preview")
    finally:
        kill(worker)
    preview.refresh_from_db()
    assert preview.progress == 100 and preview.processed == preview.unique_inputs >= 200
    assert preview.sources["decision_logs"] == 200
    assert preview.changes["transitions"] == {}  # nothing changed: the candidate is what is active
    assert preview.duration_ms is not None
