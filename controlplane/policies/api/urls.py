from rest_framework.routers import SimpleRouter

from controlplane.policies.api.views import PolicyModuleViewSet, ToolViewSet

router = SimpleRouter()
router.register("policies", PolicyModuleViewSet, basename="policy")
router.register("tools", ToolViewSet, basename="tool")

urlpatterns = router.urls
