from django.urls import include, path
from rest_framework.routers import SimpleRouter

from controlplane.detection.api.views import (
    AlertViewSet,
    BaselineViewSet,
    IncidentViewSet,
    ResponsePolicyViewSet,
)

router = SimpleRouter()
router.register("alerts", AlertViewSet, basename="detection-alert")
router.register("incidents", IncidentViewSet, basename="detection-incident")
router.register("response-policies", ResponsePolicyViewSet, basename="detection-response-policy")
router.register("baselines", BaselineViewSet, basename="detection-baseline")

urlpatterns = [path("detection/", include(router.urls))]
