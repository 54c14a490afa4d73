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

    class Meta:
        ordering = ["report", "position"]
        constraints = [models.UniqueConstraint(fields=["report", "control_id"], name="compliance_result_once")]

    def __str__(self) -> str:
        return f"{self.control_id}: {self.status}"
