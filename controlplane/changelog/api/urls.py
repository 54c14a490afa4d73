from rest_framework.routers import SimpleRouter

from controlplane.changelog.api.views import ObjectChangeViewSet

router = SimpleRouter()
router.register("changes", ObjectChangeViewSet, basename="change")

urlpatterns = router.urls
