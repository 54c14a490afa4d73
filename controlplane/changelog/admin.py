from django.contrib import admin

from controlplane.changelog.models import ObjectChange
from controlplane.core.admin import ReadOnlyAdmin


@admin.register(ObjectChange)
class ObjectChangeAdmin(ReadOnlyAdmin):
    """The change log is evidence, so nobody edits it, not even an admin."""

    list_display = ("time", "user_name", "action", "object_type", "object_repr")
    list_filter = ("action", "object_type")
    search_fields = ("object_repr", "object_id", "user_name", "message")
    date_hierarchy = "time"
