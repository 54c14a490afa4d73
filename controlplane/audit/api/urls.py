from django.urls import include, path
from rest_framework.routers import SimpleRouter

from controlplane.audit.api.views import (
    AuditEventViewSet,
    BatchViewSet,
    CheckpointHeadView,
    CheckpointViewSet,
    QuarantineViewSet,
    RetentionPolicyViewSet,
    TimelineView,
    VerifyView,
)

router = SimpleRouter()
router.register("batches", BatchViewSet, basename="audit-batch")
router.register("events", AuditEventViewSet, basename="audit-event")
router.register("quarantine", QuarantineViewSet, basename="audit-quarantine")
router.register("checkpoints", CheckpointViewSet, basename="audit-checkpoint")
router.register("retention-policies", RetentionPolicyViewSet, basename="audit-retention-policy")

urlpatterns = [
    path("audit/", include(router.urls)),
    path("audit/timeline/", TimelineView.as_view(), name="audit-timeline"),
    path("audit/verify/", VerifyView.as_view(), name="audit-verify"),
    path("audit/head/", CheckpointHeadView.as_view(), name="audit-head"),
]
