"""Detection: per-agent baselines, the alerts raised when an agent behaves unlike itself,
their deliveries, the automatic responses an environment opts into, and incidents with
the regulatory clocks that start when the organisation becomes aware of them."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from controlplane.identity.models import Agent, RiskTier


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


SEVERITY_RANK = {value: rank for rank, value in enumerate(Severity.values)}


class Detector(models.TextChoices):
    NEW_DESTINATION = "new_destination", "Never-seen destination"
    NEW_TOOL = "new_tool", "First-seen tool"
    CALL_RATE = "call_rate", "Call rate of a tool (runaway loop)"
    DATA_VOLUME = "data_volume", "Data volume sent"
    DENIAL_PROBING = "denial_probing", "Repeated denied actions (privilege probing)"
    OFF_HOURS = "off_hours", "Bulk reads at an unusual hour"
    SENSITIVE_THEN_EXTERNAL = "sensitive_then_external", "Sensitive read, then external send"


class DetectionCursor(models.Model):
    """How far detection has read a stream (audit events, OPA decision logs): the watermark."""

    stream = models.CharField(max_length=32, primary_key=True)
    position = models.BigIntegerField(default=0, help_text="The highest row id already processed.")
    processed = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.stream}@{self.position}"


class AgentBaseline(models.Model):
    """What is normal for one agent, learned from its stream (engine/profile.py owns the shape)."""

    agent = models.OneToOneField(Agent, on_delete=models.CASCADE, primary_key=True, related_name="baseline")
    state = models.JSONField(default=dict)
    source = models.CharField(max_length=16, default="audit", help_text="audit or opa: the stream it learns from.")
    events = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"baseline of {self.agent_id}"


class AlertState(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"
    FALSE_POSITIVE = "false_positive", "False positive"


OPEN_STATES = (AlertState.OPEN, AlertState.ACKNOWLEDGED)


class Alert(models.Model):
    """One anomaly of one agent: a sentence with the numbers, the baseline it broke, the
    evidence (sessions, records), and who handled it when."""

    id = models.BigAutoField(primary_key=True)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="alerts")
    detector = models.CharField(max_length=32, choices=Detector.choices, db_index=True)
    subject = models.CharField(max_length=300, help_text="What broke the baseline: a tool, a destination, an hour.")
    severity = models.CharField(max_length=16, choices=Severity.choices, db_index=True)
    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.OPEN, db_index=True)
    summary = models.TextField(help_text="One sentence with the numbers behind the alert.")
    baseline = models.JSONField(default=dict, help_text="The baseline figures the behaviour broke.")
    observed = models.JSONField(default=dict, help_text="The figures observed.")
    session_ids = models.JSONField(default=list, blank=True)
    record_ids = models.JSONField(default=list, blank=True)
    event_ids = models.JSONField(default=list, blank=True)
    decision_ids = models.JSONField(default=list, blank=True)
    occurrences = models.PositiveIntegerField(default=1, help_text="Findings merged into this open alert.")
    first_seen_at = models.DateTimeField(help_text="Event time of the first behaviour that raised it.")
    last_seen_at = models.DateTimeField()
    stored_at = models.DateTimeField(null=True, blank=True, help_text="When the triggering event was stored.")
    raised_at = models.DateTimeField(default=timezone.now, db_index=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    note = models.TextField(blank=True, max_length=5000)
    response = models.JSONField(default=dict, blank=True, help_text="The automatic response taken, if any.")

    class Meta:
        ordering = ["-raised_at", "-id"]
        indexes = [models.Index(fields=["agent", "detector", "subject", "state"], name="detection_alert_open")]
        constraints = [
            # One open alert per agent, detector and subject: a repeat merges into it.
            models.UniqueConstraint(fields=["agent", "detector", "subject"],
                                    condition=models.Q(state__in=["open", "acknowledged"]),
                                    name="detection_alert_one_open"),
        ]

    def __str__(self) -> str:
        return f"alert {self.pk} {self.severity} {self.detector} {self.subject}"


class DeliveryChannel(models.TextChoices):
    WEBHOOK = "webhook", "Signed webhook"
    EMAIL = "email", "E-mail"


class AlertDelivery(models.Model):
    """One attempt to deliver an alert: the delivery log."""

    id = models.BigAutoField(primary_key=True)
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=16, choices=DeliveryChannel.choices)
    destination = models.CharField(max_length=500)
    attempt = models.PositiveIntegerField()
    succeeded = models.BooleanField(default=False)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    attempted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "alert deliveries"


class HIPAARole(models.TextChoices):
    NONE = "none", "No breach of unsecured PHI"
    COVERED_ENTITY = "covered_entity", "Covered entity: notify individuals, 60 days (164.404)"
    BUSINESS_ASSOCIATE = "business_associate", "Business associate: notify the covered entity, 60 days (164.410)"


class ResponseAction(models.TextChoices):
    SUSPEND = "suspend", "Suspend the agent (kill switch)"
    REQUIRE_APPROVAL = "require_approval", "Hold every action of the agent for approval until the alert is closed"


class ResponsePolicy(models.Model):
    """Opt-in automatic response for one environment: which risk tiers, from which severity."""

    id = models.BigAutoField(primary_key=True)
    environment = models.CharField(max_length=64, unique=True, help_text="The environment's name.")
    enabled = models.BooleanField(default=True)
    risk_tiers = models.JSONField(default=list, help_text=f"Tiers it applies to: {', '.join(RiskTier.values)}.")
    min_severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.CRITICAL)
    action = models.CharField(max_length=16, choices=ResponseAction.choices, default=ResponseAction.SUSPEND)
    open_incident = models.BooleanField(default=True, help_text="Open an incident for the alert as well.")
    hipaa_role = models.CharField(max_length=32, choices=HIPAARole.choices, default=HIPAARole.NONE,
                                  help_text="The HIPAA clock of the incidents it opens.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["environment"]
        verbose_name_plural = "response policies"

    def __str__(self) -> str:
        return f"{self.environment}: {self.action} {','.join(self.risk_tiers)} from {self.min_severity}"


class IncidentStatus(models.TextChoices):
    """SOC 2 CC7.3 (evaluate events: triage), CC7.4 (respond: contain, remediate), CC7.5 (recover)."""

    TRIAGE = "triage", "Triage (CC7.3: evaluating whether it is an incident)"
    CONTAINMENT = "containment", "Containment (CC7.4: responding)"
    REMEDIATION = "remediation", "Remediation (CC7.4: responding)"
    RECOVERY = "recovery", "Recovery (CC7.5: recovering)"
    CLOSED = "closed", "Closed"


class AIActCase(models.TextChoices):
    """EU AI Act Art. 73: which reporting deadline applies to a serious incident."""

    NONE = "none", "Not a serious incident under Art. 73"
    GENERAL = "general", "Serious incident: 15 days (Art. 73(2))"
    DEATH = "death", "Death of a person: 10 days (Art. 73(4))"
    WIDESPREAD = "widespread", "Widespread infringement or critical infrastructure: 2 days (Art. 73(3))"


class Incident(models.Model):
    """An incident: opened from alerts or by hand, with owner, timeline and regulatory clocks."""

    id = models.BigAutoField(primary_key=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=20000)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    status = models.CharField(max_length=16, choices=IncidentStatus.choices, default=IncidentStatus.TRIAGE,
                              db_index=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    aware_at = models.DateTimeField(help_text="When the organisation became aware: every clock starts here.")
    ai_act_case = models.CharField(max_length=16, choices=AIActCase.choices, default=AIActCase.NONE)
    hipaa_role = models.CharField(max_length=32, choices=HIPAARole.choices, default=HIPAARole.NONE)
    agents = models.ManyToManyField(Agent, blank=True, related_name="incidents")
    alerts = models.ManyToManyField(Alert, blank=True, related_name="incidents")
    opened_at = models.DateTimeField(default=timezone.now)
    opened_by_name = models.CharField(max_length=150)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]

    def __str__(self) -> str:
        return f"incident {self.pk}: {self.title}"


class ClockRegime(models.TextChoices):
    AI_ACT_ART73 = "eu_ai_act_art73", "EU AI Act Art. 73 report to the market surveillance authority"
    HIPAA_164_404 = "hipaa_164_404", "HIPAA 164.404 notice to individuals"
    HIPAA_164_410 = "hipaa_164_410", "HIPAA 164.410 notice to the covered entity"


class IncidentClock(models.Model):
    """A reporting deadline of an incident, counted from its awareness time."""

    id = models.BigAutoField(primary_key=True)
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="clocks")
    regime = models.CharField(max_length=32, choices=ClockRegime.choices)
    basis = models.CharField(max_length=300, help_text="The rule that sets the deadline, in words.")
    starts_at = models.DateTimeField()
    due_at = models.DateTimeField()
    met_at = models.DateTimeField(null=True, blank=True, help_text="When the report or notice went out.")
    met_by_name = models.CharField(max_length=150, blank=True)
    reminders_sent = models.JSONField(default=list, blank=True, help_text="Lead times (hours) already reminded.")

    class Meta:
        ordering = ["due_at"]
        constraints = [models.UniqueConstraint(fields=["incident", "regime"], name="detection_clock_once")]

    def __str__(self) -> str:
        return f"{self.regime} due {self.due_at:%Y-%m-%d %H:%M}"


class TimelineKind(models.TextChoices):
    OPENED = "opened", "Opened"
    ALERT = "alert", "Alert linked"
    SESSION = "session", "Session linked"
    ACTION = "action", "Action taken"
    STATUS = "status", "Status changed"
    CLOCK = "clock", "Clock"
    NOTE = "note", "Note"


class IncidentEntry(models.Model):
    """One line of an incident's timeline."""

    id = models.BigAutoField(primary_key=True)
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="timeline")
    time = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=16, choices=TimelineKind.choices)
    by_name = models.CharField(max_length=150)
    message = models.TextField(max_length=5000)
    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    session_id = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["time", "id"]
        verbose_name_plural = "incident entries"
