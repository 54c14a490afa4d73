from django.urls import include, path
from rest_framework.routers import SimpleRouter

from controlplane.compliance.api.views import (
    AgentClassificationView,
    AttestationViewSet,
    ComplianceScopeView,
    ControlOwnerViewSet,
    FrameworkViewSet,
    GapReportViewSet,
    MappingView,
)

router = SimpleRouter()
router.register("frameworks", FrameworkViewSet, basename="compliance-framework")
router.register("reports", GapReportViewSet, basename="compliance-report")
router.register("attestations", AttestationViewSet, basename="compliance-attestation")
router.register("control-owners", ControlOwnerViewSet, basename="compliance-control-owner")

urlpatterns = [
    path("compliance/", include(router.urls)),
    path("compliance/mapping/", MappingView.as_view(), name="compliance-mapping"),
    path("compliance/scopes/<str:environment>/", ComplianceScopeView.as_view(), name="compliance-scope"),
    path("compliance/classifications/<str:agent>/", AgentClassificationView.as_view(),
         name="compliance-classification"),
]
