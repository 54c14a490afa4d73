from django.contrib import admin

from controlplane.changelog.models import ObjectChange


@admin.register(ObjectChange)
class ObjectChangeAdmin(admin.ModelAdmin):
    """Read-only: the change log is evidence, so nobody edits it, not even an admin."""

    list_display = ("time", "user_name", "action", "object_type", "object_repr")
    list_filter = ("action", "object_type")
    search_fields = ("object_repr", "object_id", "user_name", "message")
    date_hierarchy = "time"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
