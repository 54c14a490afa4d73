from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "controlplane.approvals"
    label = "approvals"
    verbose_name = "Human approval"

    def ready(self) -> None:
        from controlplane.approvals import receivers, schema  # noqa: F401  (grants consumed on ingestion; API docs)
        from controlplane.approvals.selectors import compliance_records
        from controlplane.compliance.collectors.policy import register_approval_source

        # Human-oversight controls read real decisions (at most partial without any).
        register_approval_source(compliance_records)
