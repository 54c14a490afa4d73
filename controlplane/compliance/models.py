"""Gap reports: one framework assessed against one environment over a period, with one
result per control. Results snapshot the control's text and evidence as they were, so an
old report still reads the same after the catalog or the platform changed."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from controlplane.bundles.models import Environment


class FrameworkChoice(models.TextChoices):
    EU_AI_ACT = "eu_ai_act", "EU AI Act"
    HIPAA = "hipaa", "HIPAA Security Rule"
    SOC2 = "soc2", "SOC 2"


class ReportStatus(models.TextChoices):
    PENDING = "pending", "Waiting for a worker"
    RUNNING = "running", "Collecting evidence"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ReportTrigger(models.TextChoices):
    MANUAL = "manual", "Requested through the API"
    SCHEDULED = "scheduled", "Scheduled (Celery beat)"


class ControlStatus(models.TextChoices):
    MET = "met", "Met"
    PARTIAL = "partial", "Partially met"
    GAP = "gap", "Gap"
    NOT_TESTED = "not_tested", "Not tested (no instances in the period)"
    MANUAL = "manual", "Attestation needed"
    NOT_APPLICABLE = "not_applicable", "Not applicable"


class GapReport(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    framework = models.CharField(max_length=16, choices=FrameworkChoice.choices)
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="gap_reports")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    status = models.CharField(max_length=16, choices=ReportStatus.choices, default=ReportStatus.PENDING, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done while the report is built.")
    stage = models.CharField(max_length=200, blank=True, help_text="What the builder is doing now.")
    trigger = models.CharField(max_length=16, choices=ReportTrigger.choices, default=ReportTrigger.MANUAL)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    catalog_sha256 = models.CharField(max_length=64, blank=True)
    catalog_version = models.CharField(max_length=32, blank=True)
    assess_as_of = models.DateField(null=True, blank=True,
                                    help_text="Obligations are assessed as they apply on this date (default: period end).")
    categories = models.JSONField(default=list, blank=True, help_text="SOC 2 categories in scope (security always).")
    evidence_items = models.JSONField(default=dict, blank=True,
                                      help_text="Every evidence kind collected, with its full population listing.")
    pdf_sha256 = models.CharField(max_length=64, blank=True)
    pdf_signature = models.JSONField(default=dict, blank=True, help_text="Detached signature over the PDF's SHA-256.")
    scope = models.JSONField(default=dict, blank=True, help_text="What the report looked at: bundle, checkpoint, counts.")
    summary = models.JSONField(default=dict, blank=True)
    score = models.FloatField(null=True, blank=True)
    previous = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    diff = models.JSONField(default=dict, blank=True, help_text="Changes from the previous report.")
    pdf = models.BinaryField(null=True, blank=True)
    pdf_rendered_at = models.DateTimeField(null=True, blank=True)

    change_log_exclude = ("pdf",)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["framework", "environment", "-created_at"], name="compliance_report_history")]

    def __str__(self) -> str:
        return f"{self.framework} / {self.environment.name} ({self.created_at:%Y-%m-%d %H:%M})"


class ControlResult(models.Model):
    id = models.BigAutoField(primary_key=True)
    report = models.ForeignKey(GapReport, on_delete=models.CASCADE, related_name="results")
    position = models.PositiveIntegerField()
    control_id = models.CharField(max_length=64, help_text="Id within the framework, e.g. art14(4)(e).")
    title = models.CharField(max_length=300)
    requirement = models.TextField()
    evidence_kinds = models.JSONField(default=list)
    status = models.CharField(max_length=16, choices=ControlStatus.choices)
    applicability = models.CharField(max_length=300, blank=True)
    evidence = models.JSONField(default=list, help_text="What each collector found, with the objects it came from.")
    missing = models.JSONField(default=list)
    remediation = models.TextField(blank=True)
    rules = models.JSONField(default=list, help_text="Active rules whose METADATA names this control.")
    applies_from = models.CharField(max_length=200, blank=True, help_text="When the obligation applies, per route.")
    strength = models.CharField(max_length=16, blank=True, help_text="satisfies, or supports (at most partial "
                                "from telemetry alone).")
    owner = models.CharField(max_length=150, blank=True)
    attestations = models.JSONField(default=list, blank=True, help_text="Attestations and exceptions considered.")
    contradictions = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["report", "position"]
        constraints = [models.UniqueConstraint(fields=["report", "control_id"], name="compliance_result_once")]

    def __str__(self) -> str:
        return f"{self.control_id}: {self.status}"


# -- scope ---------------------------------------------------------------------------------


class EURole(models.TextChoices):
    UNDECLARED = "", "Not declared (assumed: both)"
    PROVIDER = "provider", "Provider"
    DEPLOYER = "deployer", "Deployer"
    BOTH = "both", "Provider and deployer"


class HIPAAEntity(models.TextChoices):
    UNDECLARED = "", "Not declared"
    COVERED_ENTITY = "covered_entity", "Covered entity"
    BUSINESS_ASSOCIATE = "business_associate", "Business associate"
    BOTH = "both", "Covered entity and business associate"
    NOT_SUBJECT = "not_subject", "Not subject to HIPAA"


class ComplianceScope(models.Model):
    """What an environment's reports assume: the organisation's EU AI Act role, the SOC 2
    categories in scope, HIPAA status, and what is declared out of scope. Printed on every
    report so a reader knows what the statuses rest on."""

    environment = models.OneToOneField(Environment, on_delete=models.CASCADE, related_name="compliance_scope")
    eu_role = models.CharField(max_length=16, choices=EURole.choices, blank=True, default="")
    gpai_model_provider = models.BooleanField(default=False, help_text="Places a general-purpose AI model on the market.")
    soc2_categories = models.JSONField(default=list, blank=True,
                                       help_text="Optional categories: availability, confidentiality, "
                                       "processing_integrity, privacy (security is always in scope).")
    hipaa_entity = models.CharField(max_length=24, choices=HIPAAEntity.choices, blank=True, default="")
    out_of_scope = models.TextField(blank=True, max_length=5000)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"scope of {self.environment.name}"


class ClassificationStatus(models.TextChoices):
    UNREVIEWED = "unreviewed", "Unreviewed"
    ASSESSED = "assessed", "Assessed"


class HighRiskRoute(models.TextChoices):
    NONE = "none", "Not high-risk"
    ANNEX_III = "annex_iii", "Annex III (Art. 6(2))"
    ANNEX_I = "annex_i", "Annex I (Art. 6(1))"


ART50_TRIGGERS = ("interacts_with_persons", "generates_synthetic_content", "emotion_recognition", "deep_fake")


class AgentClassification(models.Model):
    """An agent's EU AI Act classification as a person assessed it (Art. 6(3)/(4)), the
    models it is built on, and whether it handles ePHI. Without one, the agent is unreviewed."""

    agent = models.OneToOneField("identity.Agent", on_delete=models.CASCADE, related_name="compliance_classification")
    status = models.CharField(max_length=16, choices=ClassificationStatus.choices, default=ClassificationStatus.UNREVIEWED)
    rationale = models.TextField(blank=True, max_length=10000)
    assessed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    assessed_at = models.DateTimeField(null=True, blank=True)
    high_risk_route = models.CharField(max_length=16, choices=HighRiskRoute.choices, default=HighRiskRoute.NONE)
    annex_reference = models.CharField(max_length=100, blank=True,
                                       help_text="Annex III point (e.g. 4(a)) or the Annex I act.")
    art50_triggers = models.JSONField(default=list, blank=True)
    eu_role = models.CharField(max_length=16, choices=EURole.choices, blank=True, default="",
                               help_text="Overrides the environment's role for this agent.")
    models_used = models.JSONField(default=list, blank=True, help_text="[{provider, model, version}]")
    handles_ephi = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"classification of {self.agent.name}: {self.status}"


# -- attestations, exceptions, owners, sign-off --------------------------------------------------


class AttestationKind(models.TextChoices):
    ATTESTATION = "attestation", "Attestation"
    EXCEPTION = "exception", "Exception (risk acceptance)"


class Attestation(models.Model):
    """A person's statement about a control in an environment for a period — either that
    it operates (attestation) or that its gap is accepted (exception, approved by someone
    other than the requester). Both expire; expired evidence no longer counts."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=AttestationKind.choices)
    framework = models.CharField(max_length=16, choices=FrameworkChoice.choices)
    control_id = models.CharField(max_length=64)
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="compliance_attestations")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    statement = models.TextField(max_length=10000)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    document = models.BinaryField(null=True, blank=True)
    document_name = models.CharField(max_length=200, blank=True)
    document_sha256 = models.CharField(max_length=64, blank=True)
    # Exceptions only.
    reason = models.TextField(blank=True, max_length=5000)
    compensating_measure = models.TextField(blank=True, max_length=5000)
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="+")
    approved_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Set by the daily monitoring sweep once the expiry notice went out (one notice per item).
    expiry_noticed_at = models.DateTimeField(null=True, blank=True, editable=False)

    change_log_exclude = ("document", "expiry_noticed_at")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["framework", "environment", "control_id"], name="compliance_attest_lookup")]

    def __str__(self) -> str:
        return f"{self.kind} {self.framework}.{self.control_id} ({self.environment.name})"


class ControlOwner(models.Model):
    """Who owns a control in an environment and how often it must be reviewed."""

    framework = models.CharField(max_length=16, choices=FrameworkChoice.choices)
    control_id = models.CharField(max_length=64)
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="compliance_owners")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    review_every_days = models.PositiveIntegerField(default=90)
    last_reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["framework", "control_id", "environment"],
                                               name="compliance_owner_once")]

    def __str__(self) -> str:
        return f"{self.framework}.{self.control_id} owned by {self.owner}"


class SignOffRole(models.TextChoices):
    PREPARER = "preparer", "Prepared by"
    REVIEWER = "reviewer", "Reviewed by"
    APPROVER = "approver", "Approved by"


class ReportSignOff(models.Model):
    """One person's sign-off on a finished report; three different people prepare, review
    and approve it."""

    report = models.ForeignKey(GapReport, on_delete=models.CASCADE, related_name="sign_offs")
    role = models.CharField(max_length=16, choices=SignOffRole.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    signed_at = models.DateTimeField(default=timezone.now)
    comment = models.TextField(blank=True, max_length=2000)

    class Meta:
        ordering = ["signed_at"]
        constraints = [models.UniqueConstraint(fields=["report", "role"], name="compliance_signoff_once")]
