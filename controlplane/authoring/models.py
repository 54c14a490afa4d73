"""Rules authored from templates, and impact previews of policy changes."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from controlplane.bundles.models import Bundle, Environment
from controlplane.policies.models import PolicyModule


class AuthoredRule(models.Model):
    """A rule made from a template: its answers, its examples and the module generated from
    them (org/authoring/<name>.rego, tests beside it). The module is the source of truth
    once written; an engineer may edit it as Rego."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=63, unique=True)
    template = models.CharField(max_length=32)
    params = models.JSONField()
    examples = models.JSONField(default=list, blank=True)
    sentence = models.CharField(max_length=1000)
    log_only = models.BooleanField(default=False, help_text="Evaluated and logged, not enforced.")
    module = models.ForeignKey(PolicyModule, null=True, on_delete=models.PROTECT, related_name="+")
    test_module = models.ForeignKey(PolicyModule, null=True, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PreviewStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ImpactPreview(models.Model):
    """What a candidate set of policy files would have decided differently from the active
    bundle's, over an environment's recorded traffic (decision logs and signed intent
    records in a window) and the library's test inputs."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="impact_previews")
    status = models.CharField(max_length=16, choices=PreviewStatus.choices, default=PreviewStatus.QUEUED)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    baseline_files = models.JSONField(help_text="Policy files of the environment's active bundle.")
    candidate_files = models.JSONField(help_text="Policy files that would be published.")
    candidate_digest = models.CharField(max_length=64, help_text="SHA-256 over the candidate's policy files.")
    total = models.PositiveIntegerField(default=0, help_text="Decisions replayed (recorded and library).")
    unique_inputs = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0, help_text="Unique inputs replayed so far.")
    sources = models.JSONField(default=dict, blank=True, help_text="{decision_logs, intents, library}: how many of each.")
    changes = models.JSONField(default=dict, blank=True, help_text="Counts by transition, rule, agent and tool.")
    samples = models.JSONField(default=list, blank=True, help_text="Sample changed decisions with their exact inputs.")
    relaxations = models.PositiveIntegerField(default=0, help_text="Decisions that become less strict.")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    second_person = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Who released the relaxations (four-eyes), not the requester.",
    )
    released_at = models.DateTimeField(null=True, blank=True)
    bundle = models.ForeignKey(Bundle, null=True, blank=True, on_delete=models.SET_NULL, related_name="impact_previews")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"impact preview {self.pk} ({self.environment_id}, {self.status})"

    @property
    def progress(self) -> int:
        if self.status == PreviewStatus.DONE:
            return 100
        return int(100 * self.processed / self.unique_inputs) if self.unique_inputs else 0
