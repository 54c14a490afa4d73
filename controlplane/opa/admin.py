from django.contrib import admin

from controlplane.core.admin import ReadOnlyAdmin
from controlplane.opa.models import DecisionLog, OPAInstance


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
