from django.apps import AppConfig


class DetectionConfig(AppConfig):
    name = "controlplane.detection"
    label = "detection"
    verbose_name = "Detection and incidents"
