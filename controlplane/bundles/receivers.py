"""Registry changes reach every environment's bundle right after they commit.

The rebuild runs in the process that made the change, so a suspended agent is in the
next bundle within milliseconds; the periodic `reconcile_bundles` task repairs anything
a crash in between could have missed. A kill switch sends the signal with `deliver=True`
outside any transaction and gets, as this receiver's response, the delivery report (or
NotDelivered raised), so it never answers 200 for a change engines do not have.
"""

from django.dispatch import receiver

from controlplane.bundles.selectors import delivery_report
from controlplane.bundles.services import refresh_all_environments, refresh_environment
from controlplane.core.signals import registry_changed


@receiver(registry_changed, dispatch_uid="bundles.refresh_on_registry_change")
def refresh_bundles(sender, reason: str, deliver: bool = False, agent=None, environment: str | None = None, **kwargs):
    if environment is not None and not deliver:  # a change only that environment's data carries
        refresh_environment(environment, reason=reason)
        return None
    if deliver and agent is not None:
        # A kill switch changes the agent's status only: the registries of the environments
        # it runs in are the only ones that change (the reconcile job covers the rest).
        refresh_all_environments(reason=reason, raise_on_failure=True, only=list(agent.environments))
        return delivery_report(agent)
    refresh_all_environments(reason=reason, raise_on_failure=deliver)
    if deliver:
        return delivery_report(agent)
    return None
