from rest_framework.routers import SimpleRouter

from controlplane.accounts.api.views import APITokenViewSet, UserViewSet

router = SimpleRouter()
router.register("users", UserViewSet, basename="user")
router.register("tokens", APITokenViewSet, basename="token")

urlpatterns = router.urls
