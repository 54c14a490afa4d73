"""The Celery app of the control plane; its configuration lives in Django settings (CELERY_*)."""

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("warden")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Task counts and run times, and the worker's /metrics on WARDEN_METRICS_PORT (docs/deploy.md).
import controlplane.metrics.worker  # noqa: E402,F401

# Periodic jobs are declared here, next to the app, as later domains add them.
app.conf.beat_schedule = {
    # Repairs any bundle a crash kept from following a registry change.
    "reconcile-bundles": {"task": "bundles.reconcile", "schedule": 60.0},
    # Stores queued OPA status reports and decision logs whose drain was not started (broker down).
    "opa-ingest-uploads": {"task": "opa.ingest_uploads", "schedule": 30.0},
    "approvals-expire-due": {"task": "approvals.expire_due", "schedule": 30.0},
    # Signs a Merkle checkpoint over the audit events stored since the last one.
    "audit-checkpoint": {"task": "audit.checkpoint", "schedule": 60.0},
    # Deletes events past their retention and records what it removed in a signed checkpoint.
    "audit-retention": {"task": "audit.retention", "schedule": 86400.0},
    # Creates the audit events' monthly partitions three months ahead, before their rows arrive.
    "audit-create-partitions": {"task": "audit.create_partitions", "schedule": 86400.0},
    # Re-queues batches whose verification was lost with a dead worker.
    "audit-requeue-stale-batches": {"task": "audit.requeue_stale_batches", "schedule": 60.0},
    # A gap report per framework and environment every Monday morning (UTC).
    "compliance-weekly-gap-reports": {
        "task": "compliance.schedule_gap_reports", "schedule": crontab(day_of_week=1, hour=5, minute=0),
    },
    # Continuous monitoring between reports: evidence about to expire is notified once, daily.
    "compliance-sweep-expiring": {"task": "compliance.sweep_expiring", "schedule": crontab(hour=6, minute=0)},
    # Re-queues reports whose build was lost with a dead worker.
    "compliance-requeue-stale-reports": {"task": "compliance.requeue_stale_reports", "schedule": 600.0},
    # Anomaly detection over the events stored since its watermark (incremental, idempotent).
    "detection-run": {"task": "detection.run", "schedule": 30.0},
    # Reminders before an incident's regulatory clock runs out.
    "detection-remind-clocks": {"task": "detection.remind_clocks", "schedule": 900.0},
}
