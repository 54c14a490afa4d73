"""AuthZEN per environment, mounted at /authzen/ (docs/interop.md)."""

from django.urls import path

from controlplane.interop import views

app_name = "interop"

urlpatterns = [
    path("<slug:environment>/<path:endpoint>", views.authzen, name="authzen"),
]
