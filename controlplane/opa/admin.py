from django.contrib import admin

from controlplane.opa.models import DecisionLog, OPAInstance


class ReadOnlyAdmin(admin.ModelAdmin):
    """What OPA reported is evidence: shown, never edited here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DecisionLog)
class DecisionLogAdmin(ReadOnlyAdmin):
    list_display = ("timestamp", "environment", "path", "decision_id", "instance_id")
    list_filter = ("environment",)
    search_fields = ("decision_id", "path", "instance_id")
    date_hierarchy = "timestamp"
    list_select_related = ("environment",)


@admin.register(OPAInstance)
class OPAInstanceAdmin(ReadOnlyAdmin):
    list_display = ("instance_id", "environment", "version", "active_revision", "last_seen")
    list_filter = ("environment", "version")
    search_fields = ("instance_id", "active_revision")
    list_select_related = ("environment",)
