from celery import shared_task

from controlplane.authoring import previews
from controlplane.authoring.models import ImpactPreview


@shared_task(name="authoring.run_impact_preview", acks_late=True)
def run_impact_preview(preview_id: str) -> str:
    """Replay recorded traffic against a candidate policy. Idempotent."""
    return previews.run_impact_preview(ImpactPreview.objects.select_related("environment").get(pk=preview_id)).status
