from rest_framework.routers import SimpleRouter

from controlplane.authoring.api.views import AuthoredRuleViewSet, ImpactPreviewViewSet, TemplateViewSet

router = SimpleRouter()
router.register("authoring/templates", TemplateViewSet, basename="authoring-template")
router.register("authoring/rules", AuthoredRuleViewSet, basename="authoring-rule")
router.register("authoring/previews", ImpactPreviewViewSet, basename="authoring-preview")

urlpatterns = router.urls
