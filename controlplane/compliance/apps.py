from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "controlplane.compliance"
    label = "compliance"
    verbose_name = "Compliance"

    def ready(self) -> None:
        # A catalog naming an unknown evidence kind or a malformed control must stop the
        # process at start-up, not surface as a wrong report weeks later.
        from controlplane.compliance.catalog import load_catalogs

        load_catalogs()
