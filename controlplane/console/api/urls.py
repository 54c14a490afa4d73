from django.urls import path

from controlplane.console.api.views import PlaygroundView, SessionView

urlpatterns = [
    path("console/session/", SessionView.as_view(), name="console-session"),
    path("console/playground/", PlaygroundView.as_view(), name="console-playground"),
]
