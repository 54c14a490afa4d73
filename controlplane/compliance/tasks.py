"""Celery tasks of the compliance domain: unpack ids, call a service, nothing else."""

from __future__ import annotations

from celery import shared_task

from controlplane.compliance import services


@shared_task(name="compliance.build_gap_report", acks_late=True, reject_on_worker_lost=True)
def build_gap_report(report_id: str) -> dict | None:
    """Build one gap report; a report already done is left alone, a failure is recorded on it."""
    report = services.build_gap_report(report_id)
    if report is None:
        return None
    return {"report_id": str(report.pk), "status": report.status, "score": report.score}


@shared_task(name="compliance.schedule_gap_reports", acks_late=True)
def schedule_gap_reports() -> list[str]:
    """Request a report for every framework and environment (Celery beat, weekly)."""
    return [str(report.pk) for report in services.schedule_gap_reports()]


@shared_task(name="compliance.requeue_stale_reports", acks_late=True)
def requeue_stale_reports() -> list[str]:
    """Enqueue again reports left pending by a lost message or running by a dead worker."""
    return services.requeue_stale_reports()


@shared_task(name="compliance.deliver_notices", acks_late=True)
def deliver_notices(report_id: str) -> dict:
    """E-mail and webhook a report's monitoring notices (regressions, expiring attestations)."""
    from controlplane.compliance import monitoring

    return monitoring.deliver(report_id)


@shared_task(name="compliance.sweep_expiring", acks_late=True)
def sweep_expiring() -> dict:
    """Notify attestations and exceptions entering their last 30 days (Celery beat, daily)."""
    from controlplane.compliance import monitoring

    return monitoring.sweep_expiring()
