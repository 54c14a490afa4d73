"""The embedded default's periodic jobs: a scheduler thread runs the beat schedule's tasks
in-process, so a bundle a crash left behind is repaired under `make run` too."""

import json
import os
import subprocess
import sys
import time

import pytest
from celery import current_app

from controlplane.bundles import archive
from controlplane.core.scheduler import InProcessJobs
from controlplane.identity.models import Agent
from tests.bundles.factories import built_bundle, environment
from tests.identity.factories import AgentFactory
from tests.core.test_settings import ROOT
from tests.tasks_inline import tasks_run_inline

DEADLINE = 30.0  # a failure bound, not a measured figure


@pytest.fixture
def eager():
    """Tasks run in-process, as on the embedded default."""
    with tasks_run_inline():
        yield


def bot_status_in_bundle(name="dev") -> str:
    from controlplane.bundles.models import Environment

    bundle = Environment.objects.select_related("active_bundle").get(name=name).active_bundle
    return json.loads(archive.read_tar_gz(bytes(bundle.archive))["data.json"])["warden_registry"]["agents"]["bot"]["status"]


@pytest.mark.django_db(transaction=True)
def test_the_scheduler_thread_runs_reconcile_and_survives_a_failing_job(admin_user, eager):
    AgentFactory(name="bot", environments=["dev"])
    built_bundle(environment("dev", by=admin_user), by=admin_user)
    Agent.objects.filter(name="bot").update(status="suspended")  # as if the process died before the rebuild
    jobs = InProcessJobs(
        {"broken": {"task": "no.such.task", "schedule": 0.1}, "reconcile": {"task": "bundles.reconcile", "schedule": 0.2}},
        tick_seconds=0.05,
    )
    jobs.start()
    try:
        deadline = time.monotonic() + DEADLINE
        while bot_status_in_bundle() != "suspended" and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        jobs.stop()
    assert bot_status_in_bundle() == "suspended"
    assert jobs.runs["reconcile"] >= 1
    assert jobs.failures["broken"] >= 1 and jobs.runs["broken"] == 0


def test_every_beat_job_is_scheduled_in_process_on_the_embedded_default(tmp_path):
    probe = (
        "import django; django.setup(); from django.conf import settings; from controlplane.celery import app;"
        "from controlplane.core.scheduler import InProcessJobs; jobs = InProcessJobs(app.conf.beat_schedule);"
        "print(settings.WARDEN_IN_PROCESS_JOBS, sorted(t for t, _ in jobs._jobs.values()))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARDEN_", "DATABASE_URL", "REDIS_URL"))}
    env.update({"DJANGO_SETTINGS_MODULE": "controlplane.settings", "WARDEN_VAR_DIR": str(tmp_path)})
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("True")
    for task in ("bundles.reconcile", "audit.checkpoint", "audit.retention", "audit.requeue_stale_batches"):
        assert task in result.stdout
