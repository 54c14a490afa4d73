from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework import serializers

from controlplane.core.api import UTCDateTimeField
from controlplane.detection.models import (
    AgentBaseline,
    AIActCase,
    Alert,
    AlertDelivery,
    ClockRegime,
    HIPAARole,
    Incident,
    IncidentClock,
    IncidentEntry,
    IncidentStatus,
    ResponsePolicy,
    Severity,
)
from controlplane.identity.models import Agent, RiskTier

NOTE_MAX = 5000


class StorableCharField(serializers.CharField):
    """Text PostgreSQL can store: no NUL, no lone surrogate (each would be a 500, not a 400)."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if "\x00" in value:
            raise serializers.ValidationError("must not contain the NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise serializers.ValidationError("is not valid Unicode (lone surrogate)") from None
        return value


class AlertDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = AlertDelivery
        fields = ["id", "channel", "destination", "attempt", "succeeded", "status_code", "error", "attempted_at"]
        read_only_fields = fields


class AlertSerializer(serializers.ModelSerializer):
    agent = serializers.SlugRelatedField(slug_field="name", read_only=True)
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    closed_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    evidence = serializers.SerializerMethodField()

    class Meta:
        model = Alert
        fields = ["id", "agent", "detector", "subject", "severity", "state", "summary", "baseline", "observed",
                  "session_ids", "record_ids", "event_ids", "decision_ids", "evidence", "occurrences",
                  "first_seen_at", "last_seen_at", "stored_at", "raised_at", "acknowledged_at", "acknowledged_by",
                  "closed_at", "closed_by", "note", "response"]
        read_only_fields = fields

    def get_evidence(self, alert) -> list[str]:
        """Links to the audit log: each session's events, and each record."""
        agent = alert.agent.name
        links = [f"/api/v1/audit/events/?agent={agent}&session_id={s}" for s in alert.session_ids[:20]]
        links += [f"/api/v1/audit/events/?record_id={r}" for r in alert.record_ids[:20]]
        return links


class AlertDetailSerializer(AlertSerializer):
    deliveries = AlertDeliverySerializer(many=True, read_only=True)
    incidents = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta(AlertSerializer.Meta):
        fields = [*AlertSerializer.Meta.fields, "deliveries", "incidents"]
        read_only_fields = fields


class AlertNoteSerializer(serializers.Serializer):
    note = StorableCharField(required=False, allow_blank=True, max_length=NOTE_MAX, default="")


class InboxSerializer(serializers.Serializer):
    open = serializers.IntegerField()
    acknowledged = serializers.IntegerField()
    by_severity = serializers.DictField(child=serializers.IntegerField())
    latest_id = serializers.IntegerField(allow_null=True)


class UserField(serializers.SlugRelatedField):
    def __init__(self, **kwargs):
        super().__init__(slug_field="username", queryset=get_user_model().objects.filter(is_active=True), **kwargs)


class IncidentClockSerializer(serializers.ModelSerializer):
    remaining_seconds = serializers.SerializerMethodField()

    class Meta:
        model = IncidentClock
        fields = ["regime", "basis", "starts_at", "due_at", "met_at", "met_by_name", "reminders_sent",
                  "remaining_seconds"]
        read_only_fields = fields

    def get_remaining_seconds(self, clock) -> int | None:
        return None if clock.met_at else int((clock.due_at - timezone.now()).total_seconds())


class IncidentEntrySerializer(serializers.ModelSerializer):
    agent = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)

    class Meta:
        model = IncidentEntry
        fields = ["id", "time", "kind", "by_name", "message", "alert", "agent", "session_id"]
        read_only_fields = fields


class IncidentSerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    agents = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    alerts = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    clocks = IncidentClockSerializer(many=True, read_only=True)

    class Meta:
        model = Incident
        fields = ["id", "title", "description", "severity", "status", "owner", "aware_at", "ai_act_case",
                  "hipaa_role", "agents", "alerts", "clocks", "opened_at", "opened_by_name", "closed_at"]
        read_only_fields = fields


class IncidentDetailSerializer(IncidentSerializer):
    timeline = IncidentEntrySerializer(many=True, read_only=True)

    class Meta(IncidentSerializer.Meta):
        fields = [*IncidentSerializer.Meta.fields, "timeline"]
        read_only_fields = fields


class IncidentCreateSerializer(serializers.Serializer):
    title = StorableCharField(max_length=200)
    description = StorableCharField(required=False, allow_blank=True, max_length=20000, default="")
    severity = serializers.ChoiceField(choices=Severity.choices)
    owner = UserField(required=False, allow_null=True)
    aware_at = UTCDateTimeField(required=False, help_text="Default: now. Every clock starts here.")
    ai_act_case = serializers.ChoiceField(choices=AIActCase.choices, default=AIActCase.NONE)
    hipaa_role = serializers.ChoiceField(choices=HIPAARole.choices, default=HIPAARole.NONE)
    alerts = serializers.PrimaryKeyRelatedField(many=True, queryset=Alert.objects.all(), required=False, default=list)
    agents = serializers.SlugRelatedField(slug_field="name", many=True, queryset=Agent.objects.all(), required=False,
                                          default=list)


class IncidentUpdateSerializer(serializers.Serializer):
    title = StorableCharField(max_length=200, required=False)
    description = StorableCharField(required=False, allow_blank=True, max_length=20000)
    severity = serializers.ChoiceField(choices=Severity.choices, required=False)
    owner = UserField(required=False, allow_null=True)
    aware_at = UTCDateTimeField(required=False)
    ai_act_case = serializers.ChoiceField(choices=AIActCase.choices, required=False)
    hipaa_role = serializers.ChoiceField(choices=HIPAARole.choices, required=False)


class IncidentFromAlertSerializer(serializers.Serializer):
    ai_act_case = serializers.ChoiceField(choices=AIActCase.choices, required=False)
    hipaa_role = serializers.ChoiceField(choices=HIPAARole.choices, default=HIPAARole.NONE)
    owner = UserField(required=False, allow_null=True)


class IncidentStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=IncidentStatus.choices)
    note = StorableCharField(required=False, allow_blank=True, max_length=NOTE_MAX, default="")


class LinkAlertSerializer(serializers.Serializer):
    alert = serializers.PrimaryKeyRelatedField(queryset=Alert.objects.select_related("agent"))


class LinkSessionSerializer(serializers.Serializer):
    agent = serializers.SlugRelatedField(slug_field="name", queryset=Agent.objects.all())
    session_id = StorableCharField(max_length=200)


class IncidentActionSerializer(serializers.Serializer):
    text = StorableCharField(max_length=NOTE_MAX)


class ClockMetSerializer(serializers.Serializer):
    regime = serializers.ChoiceField(choices=ClockRegime.choices)
    at = UTCDateTimeField(required=False, help_text="When the report or notice went out (default: now).")
    note = StorableCharField(required=False, allow_blank=True, max_length=NOTE_MAX, default="")


class ResponsePolicySerializer(serializers.ModelSerializer):
    environment = StorableCharField(max_length=64)
    risk_tiers = serializers.ListField(child=serializers.ChoiceField(choices=RiskTier.choices), min_length=1,
                                       max_length=len(RiskTier.values))
    min_severity = serializers.ChoiceField(choices=Severity.choices, default=Severity.CRITICAL)
    hipaa_role = serializers.ChoiceField(choices=HIPAARole.choices, default=HIPAARole.NONE)

    class Meta:
        model = ResponsePolicy
        fields = ["id", "environment", "enabled", "risk_tiers", "min_severity", "action", "open_incident",
                  "hipaa_role", "updated_at"]
        read_only_fields = ["id", "updated_at"]


class BaselineSerializer(serializers.ModelSerializer):
    agent = serializers.SlugRelatedField(slug_field="name", read_only=True)
    known_tools = serializers.SerializerMethodField()
    known_destinations = serializers.SerializerMethodField()
    hour_of_day = serializers.SerializerMethodField()
    active_hours = serializers.SerializerMethodField()

    class Meta:
        model = AgentBaseline
        fields = ["agent", "source", "events", "updated_at", "known_tools", "known_destinations", "hour_of_day",
                  "active_hours"]
        read_only_fields = fields

    def get_known_tools(self, baseline) -> list[str]:
        return sorted(baseline.state.get("tools", {}))[:500]

    def get_known_destinations(self, baseline) -> list[str]:
        return sorted(baseline.state.get("destinations", {}))[:500]

    def get_hour_of_day(self, baseline) -> list[int]:
        return baseline.state.get("hour_of_day", [0] * 24)

    def get_active_hours(self, baseline) -> int:
        return len(baseline.state.get("history", {}).get("calls", []))
