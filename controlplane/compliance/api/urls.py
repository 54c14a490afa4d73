from django.urls import include, path
from rest_framework.routers import SimpleRouter

from controlplane.compliance.api.views import FrameworkViewSet, GapReportViewSet, MappingView

router = SimpleRouter()
router.register("frameworks", FrameworkViewSet, basename="compliance-framework")
router.register("reports", GapReportViewSet, basename="compliance-report")

urlpatterns = [
    path("compliance/", include(router.urls)),
    path("compliance/mapping/", MappingView.as_view(), name="compliance-mapping"),
]
