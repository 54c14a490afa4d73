"""Celery tasks of detection: unpack ids, call a service, nothing else."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from controlplane.detection.services import delivery, incidents, scanning


@shared_task(name="detection.run", acks_late=True, autoretry_for=(OperationalError,), max_retries=3)
def run_detection() -> dict:
    """Process the events stored since the watermark (idempotent; one runner at a time)."""
    run = scanning.run_detection()
    return {"events": run.events, "decisions": run.decisions, "alerts": run.alerts, "busy": run.busy}


@shared_task(
    name="detection.deliver_webhook", bind=True, acks_late=True, autoretry_for=(delivery.DeliveryFailed,),
    retry_backoff=5, retry_backoff_max=600, retry_jitter=False, max_retries=8,
)
def deliver_webhook(self, alert_id: int, severity: str = "") -> bool:
    return delivery.deliver_webhook(alert_id, attempt=self.request.retries + 1, severity=severity) is not None


@shared_task(
    name="detection.deliver_email", bind=True, acks_late=True, autoretry_for=(delivery.DeliveryFailed,),
    retry_backoff=30, retry_backoff_max=900, max_retries=5,
)
def deliver_email(self, alert_id: int, severity: str = "") -> bool:
    return delivery.deliver_email(alert_id, attempt=self.request.retries + 1) is not None


@shared_task(name="detection.remind_clocks", acks_late=True)
def remind_clocks() -> list[int]:
    """E-mail incident owners about regulatory clocks close to running out."""
    return incidents.send_clock_reminders()
