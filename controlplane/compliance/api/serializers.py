from rest_framework import serializers

from controlplane.bundles.models import Environment
from controlplane.compliance.catalog import SOC2_CATEGORIES
from controlplane.compliance.models import (
    ART50_TRIGGERS,
    AgentClassification,
    Attestation,
    AttestationKind,
    ComplianceScope,
    ControlOwner,
    ControlResult,
    EURole,
    FrameworkChoice,
    GapReport,
    HIPAAEntity,
    HighRiskRoute,
    ClassificationStatus,
    ReportSignOff,
    SignOffRole,
)
from controlplane.core.api import UTCDateTimeField


class GapReportRequestSerializer(serializers.Serializer):
    framework = serializers.ChoiceField(choices=FrameworkChoice.choices)
    environment = serializers.SlugRelatedField(slug_field="name", queryset=Environment.objects.all())
    period_start = UTCDateTimeField(required=False, help_text="Default: period_end minus 90 days.")
    period_end = UTCDateTimeField(required=False, help_text="Default: now.")
    assess_as_of = serializers.DateField(required=False, help_text="Assess obligations as they apply on this date "
                                         "(readiness, e.g. 2027-12-02 for Annex III). Default: the period's end.")
    categories = serializers.ListField(
        child=serializers.ChoiceField(choices=list(SOC2_CATEGORIES)), required=False, max_length=5,
        help_text="SOC 2 categories in scope (security is always in). Default: the environment's declared scope.")


class SignOffSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ReportSignOff
        fields = ["role", "user", "signed_at", "comment"]
        read_only_fields = ["user", "signed_at"]


class SignOffRequestSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=SignOffRole.choices)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, trim_whitespace=False)


class ControlResultSerializer(serializers.ModelSerializer):
    class Meta:
        model = ControlResult
        fields = ["control_id", "title", "requirement", "status", "applicability", "applies_from", "strength",
                  "owner", "evidence_kinds", "evidence", "missing", "remediation", "rules", "attestations",
                  "contradictions"]


class GapReportSerializer(serializers.ModelSerializer):
    environment = serializers.SlugRelatedField(slug_field="name", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    pdf_url = serializers.SerializerMethodField()
    package_url = serializers.SerializerMethodField()
    sign_offs = SignOffSerializer(many=True, read_only=True)

    class Meta:
        model = GapReport
        fields = ["id", "framework", "environment", "period_start", "period_end", "assess_as_of", "categories",
                  "status", "progress", "stage", "trigger", "requested_by", "created_at", "started_at", "finished_at",
                  "error", "score", "summary", "diff", "scope", "catalog_version", "catalog_sha256", "previous",
                  "pdf_url", "pdf_sha256", "package_url", "sign_offs"]
        read_only_fields = fields

    def get_pdf_url(self, report) -> str | None:
        return f"/api/v1/compliance/reports/{report.pk}/pdf/" if report.status == "done" else None

    def get_package_url(self, report) -> str | None:
        return f"/api/v1/compliance/reports/{report.pk}/package/" if report.status == "done" else None


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
    applies_from = serializers.DateField(allow_null=True, help_text="The earliest date on any route.")
    applies_from_by_route = serializers.SerializerMethodField()
    implementation = serializers.CharField()
    category = serializers.CharField()
    role = serializers.CharField()
    strength = serializers.CharField()
    attestation_required = serializers.BooleanField()
    note = serializers.CharField()

    def get_applies_from_by_route(self, control) -> dict[str, str]:
        return {route: date.isoformat() for route, date in control.applies_from_by_route}


class FrameworkSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    version = serializers.CharField()
    legal_status = serializers.CharField()
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


# -- scope ---------------------------------------------------------------------------------


class ComplianceScopeSerializer(serializers.ModelSerializer):
    environment = serializers.SlugRelatedField(slug_field="name", read_only=True)
    updated_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    eu_role = serializers.ChoiceField(choices=EURole.choices, required=False, allow_blank=True)
    hipaa_entity = serializers.ChoiceField(choices=HIPAAEntity.choices, required=False, allow_blank=True)
    soc2_categories = serializers.ListField(
        child=serializers.ChoiceField(choices=[c for c in SOC2_CATEGORIES if c != "security"]), required=False,
        max_length=4, help_text="Optional categories; security is always in scope.")
    out_of_scope = serializers.CharField(required=False, allow_blank=True, max_length=5000, trim_whitespace=False)
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="null: never set")

    class Meta:
        model = ComplianceScope
        fields = ["environment", "eu_role", "gpai_model_provider", "soc2_categories", "hipaa_entity", "out_of_scope",
                  "updated_by", "updated_at"]
        read_only_fields = ["environment", "updated_by", "updated_at"]


class ModelUsedSerializer(serializers.Serializer):
    provider = serializers.CharField(max_length=100)
    model = serializers.CharField(max_length=100)
    version = serializers.CharField(max_length=100)


class AgentClassificationSerializer(serializers.ModelSerializer):
    agent = serializers.SlugRelatedField(slug_field="name", read_only=True)
    assessed_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    status = serializers.ChoiceField(choices=ClassificationStatus.choices)
    high_risk_route = serializers.ChoiceField(choices=HighRiskRoute.choices, required=False)
    eu_role = serializers.ChoiceField(choices=EURole.choices, required=False, allow_blank=True)
    art50_triggers = serializers.ListField(child=serializers.ChoiceField(choices=list(ART50_TRIGGERS)),
                                           required=False, max_length=len(ART50_TRIGGERS))
    models_used = ModelUsedSerializer(many=True, required=False, max_length=50)
    rationale = serializers.CharField(required=False, allow_blank=True, max_length=10000, trim_whitespace=False)
    annex_reference = serializers.CharField(required=False, allow_blank=True, max_length=100)
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="null: never assessed")

    class Meta:
        model = AgentClassification
        fields = ["agent", "status", "rationale", "assessed_by", "assessed_at", "high_risk_route", "annex_reference",
                  "art50_triggers", "eu_role", "models_used", "handles_ephi", "updated_at"]
        read_only_fields = ["agent", "assessed_by", "assessed_at", "updated_at"]


# -- attestations, owners --------------------------------------------------------------------


class AttestationSerializer(serializers.ModelSerializer):
    environment = serializers.SlugRelatedField(slug_field="name", read_only=True)
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    approved_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    document_url = serializers.SerializerMethodField()
    state = serializers.SerializerMethodField()

    class Meta:
        model = Attestation
        fields = ["id", "kind", "framework", "control_id", "environment", "period_start", "period_end", "statement",
                  "owner", "created_by", "created_at", "expires_at", "document_name", "document_sha256",
                  "document_url", "reason", "compensating_measure", "approved_by", "approved_at", "revoked_at", "state"]
        read_only_fields = fields

    def get_document_url(self, item) -> str | None:
        return f"/api/v1/compliance/attestations/{item.pk}/document/" if item.document_sha256 else None

    def get_state(self, item) -> str:
        from django.utils import timezone

        if item.revoked_at:
            return "revoked"
        if item.expires_at <= timezone.now():
            return "expired"
        if item.kind == AttestationKind.EXCEPTION and not item.approved_by_id:
            return "awaiting_approval"
        return "current"


class AttestationRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=AttestationKind.choices)
    framework = serializers.ChoiceField(choices=FrameworkChoice.choices)
    control_id = serializers.CharField(max_length=64, trim_whitespace=False)
    environment = serializers.SlugRelatedField(slug_field="name", queryset=Environment.objects.all())
    period_start = UTCDateTimeField()
    period_end = UTCDateTimeField()
    statement = serializers.CharField(max_length=10000, trim_whitespace=False)
    owner = serializers.CharField(max_length=150, help_text="Username of the person accountable.")
    expires_at = UTCDateTimeField()
    document_base64 = serializers.CharField(required=False, allow_blank=False,
                                            help_text="The supporting document, base64; stored with its SHA-256.")
    document_name = serializers.CharField(required=False, allow_blank=True, max_length=200, trim_whitespace=False)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=5000, trim_whitespace=False)
    compensating_measure = serializers.CharField(required=False, allow_blank=True, max_length=5000,
                                                 trim_whitespace=False)


class ControlOwnerSerializer(serializers.ModelSerializer):
    environment = serializers.SlugRelatedField(slug_field="name", queryset=Environment.objects.all())
    owner = serializers.CharField(source="owner.username")

    class Meta:
        model = ControlOwner
        fields = ["framework", "control_id", "environment", "owner", "review_every_days", "last_reviewed_at"]
        read_only_fields = ["last_reviewed_at"]


class ControlOwnerRequestSerializer(serializers.Serializer):
    framework = serializers.ChoiceField(choices=FrameworkChoice.choices)
    control_id = serializers.CharField(max_length=64, trim_whitespace=False)
    environment = serializers.SlugRelatedField(slug_field="name", queryset=Environment.objects.all())
    owner = serializers.CharField(max_length=150)
    review_every_days = serializers.IntegerField(required=False, min_value=1, max_value=730)


class SignatureSerializer(serializers.Serializer):
    format = serializers.CharField()
    subject = serializers.CharField()
    report_id = serializers.CharField()
    sha256 = serializers.CharField()
    signed_at = serializers.CharField()
    key_id = serializers.CharField()
    public_key = serializers.CharField()
    signature = serializers.CharField()
