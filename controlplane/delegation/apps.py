from django.apps import AppConfig


class DelegationConfig(AppConfig):
    name = "controlplane.delegation"
    label = "delegation"
    verbose_name = "Agent delegation"
