from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from controlplane.console import views as console_views
from controlplane.core.views import healthz, livez, readyz
from controlplane.metrics.views import metrics

api_v1 = [
    path("", include("controlplane.identity.api.urls")),
    path("", include("controlplane.delegation.api.urls")),
    path("", include("controlplane.accounts.api.urls")),
    path("", include("controlplane.changelog.api.urls")),
    path("", include("controlplane.policies.api.urls")),
    path("", include("controlplane.bundles.api.urls")),
    path("", include("controlplane.audit.api.urls")),
    path("", include("controlplane.opa.api.urls")),
    path("", include("controlplane.compliance.api.urls")),
    path("", include("controlplane.detection.api.urls")),
    path("", include("controlplane.approvals.api.urls")),
    path("", include("controlplane.console.api.urls")),
    path("", include("controlplane.authoring.api.urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    # OPA's management APIs (bundles, discovery, decision logs, status): OPA's services[].url
    # is http(s)://<host>/opa. controlplane.opa.asgi answers bundle GETs before Django.
    path("opa/", include("controlplane.opa.urls")),
    # AuthZEN 1.0 per environment (controlplane.interop; warden sidecar serves the same locally).
    path("authzen/", include("controlplane.interop.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("livez", livez, name="livez"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    # Last: unknown API paths answer JSON; every other page path is the console's index.html.
    re_path(r"^api/(?P<path>.*)$", console_views.api_not_found, name="api-not-found"),
    re_path(r"^(?!(?:api|admin|opa|authzen|static)(?:/|$)|(?:healthz|livez|readyz|metrics)$)(?P<path>.*)$", console_views.console_index, name="console"),
]
