"""Read-only admin: reports are made by the builder, never edited by hand."""

from django.contrib import admin

from controlplane.compliance.models import ControlResult, GapReport
from controlplane.core.admin import ReadOnlyAdmin


class ControlResultInline(admin.TabularInline):
    model = ControlResult
    fields = ["control_id", "title", "status", "remediation"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(GapReport)
class GapReportAdmin(ReadOnlyAdmin):
    list_display = ["id", "framework", "environment", "status", "progress", "score", "trigger", "created_at"]
    list_filter = ["framework", "status", "trigger"]
    exclude = ["pdf"]
    inlines = [ControlResultInline]
