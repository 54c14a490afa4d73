from datetime import UTC

from rest_framework import serializers

from controlplane.bundles.models import Environment
from controlplane.compliance.models import ControlResult, FrameworkChoice, GapReport


class UTCDateTimeField(serializers.DateTimeField):
    """A time normalised to UTC: PostgreSQL refuses offsets beyond ±15:59 that ISO 8601 allows."""

    def to_internal_value(self, value):
        parsed = super().to_internal_value(value)
        try:
            return parsed.astimezone(UTC)
        except (OverflowError, ValueError):
            self.fail("invalid", format="ISO 8601")


class GapReportRequestSerializer(serializers.Serializer):
    framework = serializers.ChoiceField(choices=FrameworkChoice.choices)
    environment = serializers.SlugRelatedField(slug_field="name", queryset=Environment.objects.all())
    period_start = UTCDateTimeField(required=False, help_text="Default: period_end minus 90 days.")
    period_end = UTCDateTimeField(required=False, help_text="Default: now.")


class ControlResultSerializer(serializers.ModelSerializer):
    class Meta:
        model = ControlResult
        fields = ["control_id", "title", "requirement", "status", "applicability", "evidence_kinds", "evidence",
                  "missing", "remediation", "rules"]


class GapReportSerializer(serializers.ModelSerializer):
    environment = serializers.SlugRelatedField(slug_field="name", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    pdf_url = serializers.SerializerMethodField()

    class Meta:
        model = GapReport
        fields = ["id", "framework", "environment", "period_start", "period_end", "status", "progress", "stage",
                  "trigger", "requested_by", "created_at", "started_at", "finished_at", "error", "score", "summary",
                  "diff", "scope", "catalog_sha256", "previous", "pdf_url"]
        read_only_fields = fields

    def get_pdf_url(self, report) -> str | None:
        return f"/api/v1/compliance/reports/{report.pk}/pdf/" if report.status == "done" else None


class GapReportDetailSerializer(GapReportSerializer):
    results = ControlResultSerializer(many=True, read_only=True)

    class Meta(GapReportSerializer.Meta):
        fields = [*GapReportSerializer.Meta.fields, "results"]
        read_only_fields = fields


class ControlSerializer(serializers.Serializer):
    id = serializers.CharField()
    full_id = serializers.CharField()
    title = serializers.CharField()
    requirement = serializers.CharField()
    evidence = serializers.ListField(child=serializers.CharField())
    applies_to = serializers.CharField()
    applies_from = serializers.DateField(allow_null=True)
    implementation = serializers.CharField()
    category = serializers.CharField()


class FrameworkSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    regulation = serializers.CharField()
    reference_url = serializers.CharField()
    notes = serializers.CharField()
    dates = serializers.SerializerMethodField()
    retention = serializers.SerializerMethodField()
    applicability = serializers.DictField(child=serializers.CharField())
    controls = ControlSerializer(many=True)

    def get_dates(self, framework) -> list[dict]:
        return [{"date": date.isoformat(), "event": event} for date, event in framework.dates]

    def get_retention(self, framework) -> dict:
        r = framework.retention
        return {"subject": r.subject, "min_days": r.min_days, "basis": r.basis}


class MappingControlSerializer(serializers.Serializer):
    framework = serializers.CharField()
    id = serializers.CharField()
    full_id = serializers.CharField()
    title = serializers.CharField()
    evidence_kinds = serializers.ListField(child=serializers.CharField())
    rules = serializers.ListField(child=serializers.CharField())


class MappingRuleSerializer(serializers.Serializer):
    id = serializers.CharField()
    file = serializers.CharField()
    line = serializers.IntegerField()
    head = serializers.CharField()
    effect = serializers.CharField()
    title = serializers.CharField()
    severity = serializers.CharField()
    controls = serializers.ListField(child=serializers.CharField())
    unknown_controls = serializers.ListField(child=serializers.CharField())


class MappingSerializer(serializers.Serializer):
    source = serializers.CharField()
    environment = serializers.CharField(allow_null=True)
    bundle_revision = serializers.CharField(allow_null=True)
    controls = MappingControlSerializer(many=True)
    rules = MappingRuleSerializer(many=True)
    unserved_controls = serializers.ListField(child=serializers.CharField())
