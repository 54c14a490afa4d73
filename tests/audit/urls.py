"""The project's URLs plus the audit API, as controlplane/urls.py is to include it:
under api/v1/, `path("", include("controlplane.audit.api.urls"))`."""

from django.urls import include, path

from controlplane.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    path("api/v1/", include("controlplane.audit.api.urls")),
    *project_urlpatterns,
]
