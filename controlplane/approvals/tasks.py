from celery import shared_task

from controlplane.approvals import notifications, services


@shared_task(name="approvals.notify", acks_late=True)
def notify(request_id: str, event: str) -> int:
    return notifications.notify(request_id, event)


@shared_task(
    name="approvals.deliver_webhook", acks_late=True, autoretry_for=(notifications.WebhookFailed,),
    max_retries=5, retry_backoff=2, retry_backoff_max=300, retry_jitter=False,
)
def deliver_webhook(delivery_id: int) -> bool:
    return notifications.deliver(delivery_id)


@shared_task(name="approvals.expire_due", acks_late=True)
def expire_due() -> int:
    return services.expire_due_requests()
