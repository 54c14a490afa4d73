from django.urls import include, path
from rest_framework.routers import SimpleRouter

from controlplane.approvals.api.views import (
    AgentRequestView,
    AgentWaitView,
    ApprovalRequestViewSet,
    ApprovalRuleViewSet,
    ReleaseGateViewSet,
    WebhookEndpointViewSet,
)

router = SimpleRouter()
router.register("approvals", ApprovalRequestViewSet, basename="approval")
router.register("approval-rules", ApprovalRuleViewSet, basename="approval-rule")
router.register("approval-webhooks", WebhookEndpointViewSet, basename="approval-webhook")
router.register("release-gates", ReleaseGateViewSet, basename="release-gate")

urlpatterns = [
    # Agents (signed with their key): file a held call, long-poll its decision.
    path("approvals/requests/", AgentRequestView.as_view(), name="approval-request-file"),
    path("approvals/requests/<uuid:pk>/wait/", AgentWaitView.as_view(), name="approval-request-wait"),
    path("", include(router.urls)),
]
