from django.apps import AppConfig


class ChangelogConfig(AppConfig):
    name = "controlplane.changelog"
    label = "changelog"
    verbose_name = "Change log"
