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

    OPA re-sends a chunk whose 2xx it did not see, so `decision_id` is unique and uploads are
    idempotent. The event is also kept verbatim in `event`, so fields OPA adds in later
    versions are not lost (the audit timeline reads it).
    """

    id = models.BigAutoField(primary_key=True)
    decision_id = models.CharField(max_length=128, unique=True)
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="decision_logs")
    instance_id = models.CharField(max_length=128, blank=True, help_text="labels.id of the OPA that decided.")
    path = models.CharField(max_length=1024, blank=True, help_text="The decision path, without a leading slash.")
    input = models.JSONField(null=True, blank=True)
    # Null when OPA omitted the result: the decision was undefined (the agent SDK then denies).
    result = models.JSONField(null=True, blank=True)
    bundles = models.JSONField(default=dict, blank=True, help_text="{bundle name: {revision}} active at decision time.")
    labels = models.JSONField(default=dict, blank=True)
    erased = models.JSONField(default=list, blank=True, help_text="JSON pointers removed by OPA's mask policy.")
    masked = models.JSONField(default=list, blank=True, help_text="JSON pointers replaced by OPA's mask policy.")
    timestamp = models.DateTimeField(help_text="When OPA made the decision.")
    received_at = models.DateTimeField(default=timezone.now)
    event = models.JSONField(help_text="The event exactly as OPA sent it.")

    class Meta:
        ordering = ["-timestamp", "-id"]
        indexes = [
            models.Index(fields=["environment", "-timestamp"], name="opa_decision_env_time"),
            models.Index(fields=["-timestamp"], name="opa_decision_time"),
            models.Index(fields=["path", "-timestamp"], name="opa_decision_path_time"),
        ]

    def __str__(self) -> str:
        return f"{self.decision_id} {self.path}"


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
