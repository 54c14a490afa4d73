"""What OPA instances tell Warden: their decisions (decision logs) and their state (status).

Field names follow OPA's wire format (`decision_id`, `labels`, `active_revision`) so the
OPA documentation reads directly onto these tables.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from controlplane.bundles.models import Environment


class DecisionLog(models.Model):
    """One decision an OPA instance made and uploaded (OPA's decision log event, EventV1).

    OPA re-sends a chunk whose 2xx it did not see, so a decision is stored once per
    (environment, instance, decision_id) and uploads are idempotent; scoped so that one
    environment's token can neither pre-empt nor overwrite another's decisions. The event is also kept verbatim in `event`, so fields OPA adds in later
    versions are not lost (the audit timeline reads it).
    """

    id = models.BigAutoField(primary_key=True)
    decision_id = models.CharField(max_length=128)
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="decision_logs")
    instance_id = models.CharField(max_length=128, blank=True, help_text="labels.id of the OPA that decided.")
    path = models.CharField(max_length=1024, blank=True, help_text="The decision path, without a leading slash.")
    input = models.JSONField(null=True, blank=True)
    # Null when OPA omitted the result: the decision was undefined (the agent SDK then denies).
    result = models.JSONField(null=True, blank=True)
    bundles = models.JSONField(default=dict, blank=True, help_text="{bundle name: {revision}} active at decision time.")
    labels = models.JSONField(default=dict, blank=True)
    erased = models.JSONField(default=list, blank=True, help_text="JSON pointers removed by OPA's mask policy.")
    masked = models.JSONField(
        default=list, blank=True,
        help_text="JSON pointers replaced by OPA's mask policy, and by Warden's sensitive key names.",
    )
    timestamp = models.DateTimeField(help_text="When OPA made the decision.")
    received_at = models.DateTimeField(default=timezone.now)
    event = models.JSONField(help_text="The event exactly as OPA sent it.")

    class Meta:
        ordering = ["-timestamp", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "instance_id", "decision_id"], name="opa_decision_once_per_instance"
            )
        ]
        indexes = [
            models.Index(fields=["environment", "-timestamp"], name="opa_decision_env_time"),
            models.Index(fields=["-timestamp"], name="opa_decision_time"),
            models.Index(fields=["path", "-timestamp"], name="opa_decision_path_time"),
        ]

    def __str__(self) -> str:
        return f"{self.decision_id} {self.path}"


class RejectedDecisionLog(models.Model):
    """One event of a decision log upload that could not be stored, with why.

    Kept apart so that the rest of the chunk is stored and OPA gets its 200: refusing the
    chunk would make OPA retry it ahead of every later one, for good.
    """

    id = models.BigAutoField(primary_key=True)
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="rejected_decision_logs")
    instance_id = models.CharField(max_length=128, blank=True)
    decision_id = models.CharField(max_length=128, blank=True)
    position = models.PositiveIntegerField(help_text="Index of the event in its upload.")
    reason = models.CharField(max_length=32, db_index=True)
    message = models.TextField()
    # As text, sensitive keys masked: the event may hold what no JSON column can (U+0000, 1e400).
    event = models.TextField(help_text="The event as received (JSON text, sensitive keys masked, truncated).")
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"rejected {self.decision_id or '?'}: {self.reason}"


class OPAInstance(models.Model):
    """An OPA (or Warden sidecar) of one environment, as its latest status report shows it.

    Identified by `labels.id`, the UUID each OPA generates at start-up. `active_revision` is
    the revision of the environment's bundle the instance runs, so "who runs what" is a query.
    """

    id = models.BigAutoField(primary_key=True)
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="opa_instances")
    instance_id = models.CharField(max_length=128, help_text="labels.id")
    version = models.CharField(max_length=64, blank=True, help_text="labels.version: the OPA version.")
    labels = models.JSONField(default=dict, blank=True)
    bundle_name = models.CharField(max_length=256, blank=True, help_text="Which of its bundles is Warden's.")
    active_revision = models.CharField(max_length=128, blank=True, db_index=True)
    bundles = models.JSONField(default=dict, blank=True, help_text="Per-bundle status as OPA reported it.")
    discovery = models.JSONField(null=True, blank=True)
    decision_logs = models.JSONField(null=True, blank=True)
    plugins = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["environment__position", "instance_id"]
        verbose_name = "OPA instance"
        constraints = [
            models.UniqueConstraint(fields=["environment", "instance_id"], name="unique_opa_instance_per_environment")
        ]
        indexes = [models.Index(fields=["environment", "-last_seen"], name="opa_instance_env_seen")]

    def __str__(self) -> str:
        return f"{self.environment.name}:{self.instance_id}"
