from django.urls import include, path
from rest_framework.routers import SimpleRouter

from controlplane.identity.api.views import AgentKeyViewSet, AgentViewSet

router = SimpleRouter()
router.register("agents", AgentViewSet, basename="agent")

# Keys are nested under their agent: /agents/{agent_name}/keys/{key_id}/
key_router = SimpleRouter()
key_router.register("keys", AgentKeyViewSet, basename="agent-key")

urlpatterns = [
    path("", include(router.urls)),
    path("agents/<str:agent_name>/", include(key_router.urls)),
]
