"""Warden control plane: the Django service that governs AI agents."""

# Load the Celery app with Django so that @shared_task binds to it.
from controlplane.celery import app as celery_app

__all__ = ("celery_app",)
