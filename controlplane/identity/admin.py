from django.contrib import admin

from controlplane.core.admin import ReadOnlyAdmin
from controlplane.identity.models import Agent, AgentKey


class AgentKeyInline(admin.TabularInline):
    model = AgentKey
    extra = 0
    fields = ("key_id", "label", "created_at", "revoked_at", "revoked_reason")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Agent)
class AgentAdmin(ReadOnlyAdmin):
    """Browsing only: changes go through the API so they reach the change log."""

    list_display = ("name", "display_name", "owner_email", "team", "risk_tier", "status", "updated_at")
    list_filter = ("status", "risk_tier", "team")
    search_fields = ("name", "display_name", "owner_email", "team")
    readonly_fields = ("id", "name", "status", "status_reason", "status_changed_at", "created_at", "updated_at")
    inlines = [AgentKeyInline]


@admin.register(AgentKey)
class AgentKeyAdmin(ReadOnlyAdmin):
    list_display = ("key_id", "agent", "label", "created_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("key_id", "agent__name", "label")
    readonly_fields = [f.name for f in AgentKey._meta.fields]
