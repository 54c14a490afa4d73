"""Who automatic actions are attributed to."""

from __future__ import annotations

from django.contrib.auth import get_user_model

DETECTOR_USERNAME = "warden-detector"


def detector_user():
    """The system user the detector acts as (change log, kill switch); it cannot log in."""
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(
        username=DETECTOR_USERNAME, defaults={"is_active": False, "first_name": "Warden", "last_name": "detector"}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user
