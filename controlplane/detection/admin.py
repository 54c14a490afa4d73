"""Read-only admin: alerts, incidents and baselines change only through services (change log)."""

from django.contrib import admin

from controlplane.core.admin import ReadOnlyAdmin
from controlplane.detection.models import (
    AgentBaseline,
    Alert,
    AlertDelivery,
    DetectionCursor,
    Incident,
    IncidentClock,
    IncidentEntry,
    ResponsePolicy,
)


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["id", "agent", "detector", "subject", "severity", "state", "raised_at"]
    list_filter = ["severity", "state", "detector"]
    search_fields = ["agent__name", "subject", "summary"]


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["id", "alert", "channel", "attempt", "succeeded", "status_code", "attempted_at"]
    list_filter = ["channel", "succeeded"]


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    list_display = ["id", "title", "severity", "status", "owner", "aware_at", "ai_act_case", "hipaa_role"]
    list_filter = ["status", "severity", "ai_act_case", "hipaa_role"]


@admin.register(IncidentClock)
class IncidentClockAdmin(ReadOnlyAdmin):
    list_display = ["id", "incident", "regime", "due_at", "met_at"]


@admin.register(IncidentEntry)
class IncidentEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "incident", "time", "kind", "by_name"]


@admin.register(ResponsePolicy)
class ResponsePolicyAdmin(ReadOnlyAdmin):
    list_display = ["environment", "enabled", "risk_tiers", "min_severity", "action"]


@admin.register(AgentBaseline)
class AgentBaselineAdmin(ReadOnlyAdmin):
    list_display = ["agent", "source", "events", "updated_at"]
    exclude = ["state"]


@admin.register(DetectionCursor)
class DetectionCursorAdmin(ReadOnlyAdmin):
    list_display = ["stream", "position", "processed", "updated_at"]
