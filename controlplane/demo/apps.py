from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Depends on every domain app (it seeds them all), so no domain app depends on it."""

    name = "controlplane.demo"
    label = "demo"
    verbose_name = "Warden demo data"
