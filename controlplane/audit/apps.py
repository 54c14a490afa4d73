from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "controlplane.audit"
    label = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        from controlplane.audit import schema  # noqa: F401  (registers the OpenAPI auth scheme)
