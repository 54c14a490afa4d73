"""OPA's management APIs, mounted at /opa/: OPA's `services[].url` is http(s)://<host>/opa.

OPA strips slashes around resources, so these paths have no trailing slash.
"""

from django.urls import path

from controlplane.opa import views

app_name = "opa"

urlpatterns = [
    path("bundles/<slug:environment>", views.bundle, name="bundle"),
    # The split layout (controlplane.bundles.parts): policy and registry as two bundles.
    path("bundles/<slug:environment>/<str:part>", views.bundle, name="bundle-part"),
    path("discovery/<slug:environment>", views.discovery, name="discovery"),
    path("logs", views.decision_logs, name="decision-logs"),
    # Deprecated `partition_name` of OPA's decision_logs and status plugins.
    path("logs/<slug:partition>", views.decision_logs, name="decision-logs-partition"),
    path("status", views.status, name="status"),
    path("status/<slug:partition>", views.status, name="status-partition"),
]
