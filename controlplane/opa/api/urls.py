from rest_framework.routers import SimpleRouter

from controlplane.opa.api.views import DecisionLogViewSet, OPAInstanceViewSet

router = SimpleRouter()
router.register("opa/instances", OPAInstanceViewSet, basename="opa-instance")
router.register("opa/decisions", DecisionLogViewSet, basename="opa-decision")

urlpatterns = router.urls
