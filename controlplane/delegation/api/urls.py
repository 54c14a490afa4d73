from django.urls import include, path
from rest_framework.routers import SimpleRouter

from controlplane.delegation.api.views import (
    DelegationRuleViewSet,
    LinkedSessionsView,
    PersonGrantViewSet,
    RevocationViewSet,
)

router = SimpleRouter()
router.register("delegation/rules", DelegationRuleViewSet, basename="delegation-rule")
router.register("delegation/grants", PersonGrantViewSet, basename="delegation-grant")
router.register("delegation/revocations", RevocationViewSet, basename="delegation-revocation")

urlpatterns = [
    path("delegation/sessions/", LinkedSessionsView.as_view(), name="delegation-sessions"),
    path("", include(router.urls)),
]
