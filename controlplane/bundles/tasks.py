from celery import shared_task

from controlplane.bundles.registry import prune_agent_changes
from controlplane.bundles.services import refresh_all_environments


@shared_task(name="bundles.reconcile", acks_late=True, autoretry_for=(Exception,), max_retries=3, retry_backoff=True)
def reconcile_bundles() -> int:
    """Rebuild any environment whose active bundle lags behind the registry. Idempotent."""
    refreshed = len(refresh_all_environments(reason="periodic reconcile"))
    prune_agent_changes()
    return refreshed
