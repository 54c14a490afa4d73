from celery import shared_task

from controlplane.opa import uploads


@shared_task(name="opa.ingest_uploads", acks_late=True, autoretry_for=(Exception,), max_retries=5, retry_backoff=True)
def ingest_uploads() -> int:
    """Store the queued status reports and decision logs (controlplane.opa.uploads). Idempotent."""
    return uploads.drain()
