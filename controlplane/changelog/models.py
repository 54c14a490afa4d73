"""The change log: one row for every mutation made through the control plane."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models


class ChangeAction(models.TextChoices):
    CREATE = "create", "Created"
    UPDATE = "update", "Updated"
    DELETE = "delete", "Deleted"
    SUSPEND = "suspend", "Suspended"
    RESUME = "resume", "Resumed"
    REVOKE = "revoke", "Revoked"
    ROTATE = "rotate", "Rotated"
    ACTIVATE = "activate", "Activated"
    PROMOTE = "promote", "Promoted"
    ROLLBACK = "rollback", "Rolled back"
    # Not a change but a failure someone must see: e.g. a bundle rebuild that failed, so
    # engines still enforce an earlier registry (written by the system, outside the failed
    # transaction).
    ALERT = "alert", "Alert"


class ObjectChange(models.Model):
    """Who changed what, when, with the object's state before and after.

    Rows are written by services in the same transaction as the change itself,
    so a change that rolled back leaves no entry and a committed one always has one.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    time = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="changes"
    )
    # Kept as text so the entry still says who acted after the user is deleted.
    user_name = models.CharField(max_length=150)
    action = models.CharField(max_length=16, choices=ChangeAction.choices, db_index=True)
    object_type = models.ForeignKey(ContentType, on_delete=models.PROTECT, related_name="+")
    object_id = models.CharField(max_length=64, db_index=True)
    object_repr = models.CharField(max_length=200)
    message = models.TextField(blank=True)
    prechange_data = models.JSONField(null=True, blank=True)
    postchange_data = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-time"]
        indexes = [models.Index(fields=["object_type", "object_id", "-time"])]

    def __str__(self) -> str:
        return f"{self.user_name} {self.action} {self.object_type.model} {self.object_repr}"
