"""The Celery app of the control plane; its configuration lives in Django settings (CELERY_*)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("warden")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Periodic jobs are declared here, next to the app, as later domains add them.
app.conf.beat_schedule = {
    # Repairs any bundle a crash kept from following a registry change.
    "reconcile-bundles": {"task": "bundles.reconcile", "schedule": 60.0},
}
