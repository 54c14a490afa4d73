from django.apps import AppConfig


class BundlesConfig(AppConfig):
    name = "controlplane.bundles"
    label = "bundles"
    verbose_name = "Environments and bundles"

    def ready(self) -> None:
        from controlplane.bundles import receivers  # noqa: F401  (rebuild bundles on registry changes)
