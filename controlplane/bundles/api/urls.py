from django.urls import include, path
from rest_framework.routers import SimpleRouter

from controlplane.bundles.api.views import BundleViewSet, EnvironmentTokenViewSet, EnvironmentViewSet, SigningKeyViewSet

router = SimpleRouter()
router.register("environments", EnvironmentViewSet, basename="environment")
router.register("bundles", BundleViewSet, basename="bundle")
router.register("signing-keys", SigningKeyViewSet, basename="signing-key")

token_router = SimpleRouter()
token_router.register("tokens", EnvironmentTokenViewSet, basename="environment-token")

urlpatterns = [
    path("", include(router.urls)),
    path("environments/<str:environment_name>/", include(token_router.urls)),
]
