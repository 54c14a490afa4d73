from django.contrib import admin

from controlplane.core.admin import ReadOnlyAdmin
from controlplane.policies.models import PolicyModule, PolicyRevision, Tool


@admin.register(PolicyModule)
class PolicyModuleAdmin(ReadOnlyAdmin):
    list_display = ("path", "package", "current_revision", "is_deleted", "updated_at")
    list_filter = ("is_deleted",)
    search_fields = ("path", "package")


@admin.register(PolicyRevision)
class PolicyRevisionAdmin(ReadOnlyAdmin):
    list_display = ("module", "number", "author", "message", "created_at")
    search_fields = ("module__path", "message")


@admin.register(Tool)
class ToolAdmin(ReadOnlyAdmin):
    list_display = ("name", "category", "irreversible", "scopes")
    list_filter = ("category", "irreversible")
    search_fields = ("name", "description")
