"""Grants are marked consumed when the agent's signed `consumed` record is stored."""

from django.dispatch import receiver

from controlplane.core.signals import audit_batch_stored


@receiver(audit_batch_stored, dispatch_uid="approvals.consume_grants")
def consume_grants(sender, batch_id: int, **kwargs) -> None:
    from controlplane.approvals.services import consume_grants_of_batch

    consume_grants_of_batch(batch_id)
