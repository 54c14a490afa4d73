from django.apps import AppConfig


class AuthoringConfig(AppConfig):
    name = "controlplane.authoring"
    label = "authoring"
    verbose_name = "Policy authoring"
