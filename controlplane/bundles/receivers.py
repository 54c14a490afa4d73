"""Registry changes reach every environment's bundle right after they commit.

The rebuild runs in the process that made the change, so a suspended agent is in the
next bundle within milliseconds; the periodic `reconcile_bundles` task repairs anything
a crash in between could have missed.
"""

from django.dispatch import receiver

from controlplane.bundles.services import refresh_all_environments
from controlplane.core.signals import registry_changed


@receiver(registry_changed, dispatch_uid="bundles.refresh_on_registry_change")
def refresh_bundles(sender, reason: str, **kwargs) -> None:
    refresh_all_environments(reason=reason)
