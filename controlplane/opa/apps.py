from django.apps import AppConfig


class OpaConfig(AppConfig):
    name = "controlplane.opa"
    label = "opa"
    verbose_name = "OPA management APIs"
