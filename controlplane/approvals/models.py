"""Approval requests, the votes that decide them, the rules that say who may, and the
notifications sent about them (docs/approvals.md)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class ApprovalKind(models.TextChoices):
    ACTION = "action", "A held tool call of an agent"
    RELEASE = "release", "Publishing or promoting a bundle (four-eyes release)"


class ApprovalState(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


OPEN_STATES = (ApprovalState.PENDING, ApprovalState.APPROVED)


class ApprovalRule(models.Model):
    """Who may approve what, how many must, and for how long requests and grants hold.

    The most specific rule wins: environment and category, then environment, then
    category, then the default (both blank). Category `release` governs four-eyes releases.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    environment = models.CharField(max_length=32, blank=True, help_text="Blank: every environment.")
    tool_category = models.CharField(max_length=50, blank=True, help_text="Blank: every category.")
    approver_team = models.CharField(max_length=100, blank=True, help_text="A group approvers must belong to.")
    quorum = models.PositiveSmallIntegerField(default=1, help_text="Distinct approvers needed.")
    request_ttl_seconds = models.PositiveIntegerField(default=3600)
    grant_ttl_seconds = models.PositiveIntegerField(default=300)
    sla_seconds = models.PositiveIntegerField(default=900, help_text="When the queue shows a request as late.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "tool_category"], name="approval_rule_scope"),
            models.CheckConstraint(condition=Q(quorum__gte=1) & Q(quorum__lte=10), name="approval_rule_quorum"),
        ]
        ordering = ["environment", "tool_category"]

    def __str__(self) -> str:
        return f"approval rule {self.environment or '*'}/{self.tool_category or '*'}"


class ReleaseGate(models.Model):
    """Whether publishing or promoting to an environment needs a second person. Without a
    row: on for `prod`, off elsewhere."""

    environment = models.OneToOneField("bundles.Environment", on_delete=models.CASCADE, related_name="release_gate")
    four_eyes = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"release gate {self.environment.name}: {'four eyes' if self.four_eyes else 'off'}"


class ApprovalRequest(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=ApprovalKind.choices, default=ApprovalKind.ACTION)
    state = models.CharField(max_length=16, choices=ApprovalState.choices, default=ApprovalState.PENDING)
    agent = models.ForeignKey(
        "identity.Agent", null=True, blank=True, on_delete=models.PROTECT, related_name="approval_requests"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    environment = models.CharField(max_length=32)
    session_id = models.CharField(max_length=200, blank=True)
    tool = models.CharField(max_length=200)
    tool_category = models.CharField(max_length=50, blank=True)
    # The exact arguments (bound by the grant); people see masked_args only.
    args = models.JSONField(default=dict)
    masked_args = models.JSONField(default=dict)
    args_sha256 = models.CharField(max_length=64)
    reasons = models.JSONField(default=list)
    controls = models.JSONField(default=list)
    on_behalf_of = models.JSONField(default=list)
    decision_id = models.CharField(max_length=100, blank=True)
    idempotency_key = models.CharField(max_length=64)
    # For releases: {"operation": "publish"|"promote", "source": env, "message": str}.
    release = models.JSONField(default=dict, blank=True)
    quorum = models.PositiveSmallIntegerField(default=1)
    approver_team = models.CharField(max_length=100, blank=True)
    grant_ttl_seconds = models.PositiveIntegerField(default=300)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    sla_due_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.CharField(max_length=2000, blank=True)
    grant_id = models.CharField(max_length=64, blank=True, db_index=True)
    grant_token = models.TextField(blank=True)
    grant_expires_at = models.DateTimeField(null=True, blank=True)
    consumed_at = models.DateTimeField(null=True, blank=True)
    consumed_record_id = models.CharField(max_length=64, blank=True)

    change_log_exclude = ("args", "grant_token")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One open request per held action: filing it again finds this one (idempotent).
            models.UniqueConstraint(
                fields=["agent", "idempotency_key"],
                condition=Q(state__in=["pending", "approved"], consumed_at__isnull=True),
                name="approval_request_one_open_per_action",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "created_at"], name="approval_state_created"),
            models.Index(fields=["environment", "state"], name="approval_env_state"),
        ]

    def __str__(self) -> str:
        subject = self.agent.name if self.agent_id else f"release {self.environment}"
        return f"approval {self.pk} ({subject} {self.tool}: {self.state})"


class Verdict(models.TextChoices):
    APPROVE = "approve", "Approve"
    DENY = "deny", "Deny"


class ApprovalVote(models.Model):
    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    comment = models.CharField(max_length=2000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [models.UniqueConstraint(fields=["request", "user"], name="approval_vote_once_per_user")]

    def __str__(self) -> str:
        return f"{self.verdict} by {self.user_id} on {self.request_id}"


class WebhookEndpoint(models.Model):
    """Where approval events are POSTed (Slack-compatible body), signed with HMAC-SHA256."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    encrypted_secret = models.BinaryField()
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    change_log_exclude = ("encrypted_secret",)

    def __str__(self) -> str:
        return f"webhook {self.name}"


class WebhookDelivery(models.Model):
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=32)
    payload = models.JSONField()
    attempts = models.PositiveSmallIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"delivery {self.pk} of {self.event} to {self.endpoint_id}"
