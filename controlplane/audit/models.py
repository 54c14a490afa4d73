"""The audit log: batches of signed records as received, the verified events, the
records that failed (quarantine), and signed checkpoints over the stored log.

`Batch`, `AuditEvent`, `QuarantinedRecord` and `Checkpoint` are append-only at the
database level (PostgreSQL triggers and privileges, migrations 0004 and 0008): only the
retention job may delete rows or drop a month of events, and only a batch's processing
columns may change. Audit events are partitioned by month on PostgreSQL (0008).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from controlplane.identity.models import Agent


class BatchStatus(models.TextChoices):
    PENDING = "pending", "Waiting for verification"
    VERIFIED = "verified", "Verified: every record stored or quarantined"
    PARKED = "parked", "Parked: verification kept failing; later batches go on without it"


class Batch(models.Model):
    """Records as an agent sent them, stored before the 202 so nothing acknowledged is lost."""

    id = models.BigAutoField(primary_key=True)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="audit_batches")
    key_id = models.CharField(max_length=64, help_text="The key that signed the upload request.")
    # The body as the agent sent it (gzip-compressed when it came so), after the mark that the
    # API checked its form (records.seal_checked_batch), Fernet-encrypted: it holds values the
    # API shows masked. The worker decrypts, inflates and parses it again.
    body = models.BinaryField()
    record_count = models.PositiveIntegerField()
    byte_count = models.PositiveIntegerField()
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    status = models.CharField(max_length=16, choices=BatchStatus.choices, default=BatchStatus.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Verification runs started (a crash leaves one unfinished).")
    started_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    event_count = models.PositiveIntegerField(default=0)
    quarantined_count = models.PositiveIntegerField(default=0)
    problem = models.TextField(blank=True, help_text="Why verification failed, for a parked batch.")

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "batches"
        indexes = [models.Index(fields=["agent", "status", "id"], name="audit_batch_agent_pending")]

    def __str__(self) -> str:
        return f"batch {self.pk} of {self.agent_id} ({self.record_count} records, {self.status})"


class AuditEvent(models.Model):
    """One verified record: signature valid with the key valid at its time, chain intact.

    Normalised for search; `payload` is masked. The record exactly as signed is kept
    encrypted in `sealed_record` for the signed JSONL export.
    """

    id = models.BigAutoField(primary_key=True)
    # Unique per agent (see Meta): another agent reusing an id must not squat a record. On
    # PostgreSQL the key includes `time`, the partition key (verification refuses an id
    # reused with another time: it looks ids up in every partition).
    record_id = models.UUIDField()
    # No database constraint on agent and batch (migration 0013): a row trigger per event; the
    # worker writes both from the batch it holds locked, and the batch outlives its events.
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, db_constraint=False, related_name="audit_events")
    key_id = models.CharField(max_length=64)
    session_id = models.CharField(max_length=200)
    seq = models.BigIntegerField()
    kind = models.CharField(max_length=16)
    time = models.DateTimeField(help_text="When the agent signed the record.")
    tool = models.CharField(max_length=200, blank=True, help_text="The tool of the session's current intent.")
    effect = models.CharField(max_length=32, blank=True, help_text="The decision's effect (decision records).")
    rule_ids = models.JSONField(default=list, blank=True)
    payload = models.JSONField(help_text="The record's payload after masking.")
    masked_paths = models.JSONField(default=list, blank=True, help_text="JSON pointers (into payload) masked before storage.")
    prev_hash = models.CharField(max_length=64)
    record_hash = models.CharField(max_length=64, help_text="SHA-256 of the signed record: the next record's prev_hash.")
    sealed_record = models.BinaryField(help_text="The record as signed, Fernet-encrypted.")
    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, db_constraint=False, related_name="events")
    stored_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        # On PostgreSQL the table is partitioned by month of `time` (migration 0008): its keys,
        # indexes (some partial, a hash, a GIN) and partitions are controlplane/audit/partitions.py's;
        # these declarations name them for Django and build SQLite's single table.
        constraints = [
            models.UniqueConstraint(fields=["agent", "record_id", "time"], name="audit_event_record_id_per_agent")
        ]
        indexes = [
            models.Index(fields=["agent", "session_id", "seq"], name="audit_event_session"),
            models.Index(fields=["time"], name="audit_event_time"),
            models.Index(fields=["tool", "time"], name="audit_event_tool"),
            models.Index(fields=["effect", "time"], name="audit_event_effect"),
            models.Index(fields=["record_hash"], name="audit_event_hash"),
            models.Index(fields=["agent", "time"], name="audit_event_agent_time"),
        ]

    def __str__(self) -> str:
        return f"event {self.pk} ({self.session_id}#{self.seq} {self.kind})"


class EventRule(models.Model):
    """A rule id an event names: the rule search's table (PostgreSQL only, migration 0009).

    Partitioned by month of the event's time like the events, so its months are created and
    dropped with theirs; append-only alike; filled at ingestion in the events' transaction
    (storage.insert_rule_hits). `rule_id` is partitions.rule_key(rule): a long id is keyed by
    its digest, and the search rechecks the event's `rule_ids`.
    """

    pk = models.CompositePrimaryKey("rule_id", "time", "event")
    rule_id = models.TextField()
    time = models.DateTimeField()
    event = models.ForeignKey(
        AuditEvent, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="rule_hits"
    )

    class Meta:
        db_table = "audit_auditevent_rule"

    def __str__(self) -> str:
        return f"rule {self.rule_id} of event {self.event_id}"


class QuarantineReason(models.TextChoices):
    MALFORMED = "malformed", "Malformed record"
    UNKNOWN_KEY = "unknown_key", "Unknown key"
    REVOKED_KEY = "revoked_key", "Key not valid at the record's time"
    BAD_SIGNATURE = "bad_signature", "Bad signature"
    AGENT_MISMATCH = "agent_mismatch", "Record of another agent"
    SESSION_MISMATCH = "session_mismatch", "Spliced from another session"
    BROKEN_CHAIN = "broken_chain", "Broken chain"
    SEQUENCE_GAP = "sequence_gap", "Sequence gap"
    FORKED_CHAIN = "forked_chain", "Forked chain"
    REPLAYED = "replayed", "Record id already used"
    UNSTORABLE = "unstorable", "The database refused the record"


class QuarantinedRecord(models.Model):
    """A record that failed verification: kept with why, never mixed into the events."""

    id = models.BigAutoField(primary_key=True)
    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="quarantined")
    position = models.PositiveIntegerField(help_text="Index of the record in its batch.")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="quarantined_records")
    reason = models.CharField(max_length=32, choices=QuarantineReason.choices, db_index=True)
    message = models.TextField()
    record_id = models.CharField(max_length=200, blank=True)
    session_id = models.CharField(max_length=200, blank=True)
    seq = models.BigIntegerField(null=True, blank=True)
    key_id = models.CharField(max_length=200, blank=True)
    time = models.DateTimeField(null=True, blank=True)
    raw = models.JSONField(null=True, help_text="The record as received, sensitive keys masked.")
    sealed_record = models.BinaryField(help_text="The record as received, Fernet-encrypted.")
    quarantined_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["batch", "position"], name="audit_quarantine_once")]
        indexes = [models.Index(fields=["agent", "session_id"], name="audit_quarantine_session")]

    def __str__(self) -> str:
        return f"quarantined {self.record_id or '?'}: {self.reason}"


class SessionHead(models.Model):
    """The last verified record of each (agent, session) chain: where the next batch continues."""

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="+")
    session_id = models.CharField(max_length=200)
    last_seq = models.BigIntegerField(default=-1)
    last_hash = models.CharField(max_length=64)
    last_event_id = models.BigIntegerField(null=True, blank=True)
    last_tool = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["agent", "session_id"], name="audit_session_head_once")]


class CheckpointKey(models.Model):
    """The control plane's Ed25519 key that signs checkpoints; private half encrypted at rest."""

    change_log_exclude = ("encrypted_private_key",)

    key_id = models.CharField(max_length=64, primary_key=True, help_text="Hex SHA-256 of the raw public key.")
    public_key = models.CharField(max_length=64, help_text="Base64 of the 32 raw Ed25519 public key bytes.")
    encrypted_private_key = models.BinaryField()
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.key_id[:16]


class CheckpointKind(models.TextChoices):
    EVENTS = "events", "Events stored since the previous checkpoint"
    RETENTION = "retention", "Events removed by the retention job"


class Checkpoint(models.Model):
    """A signed statement over a range of events: their Merkle root and, per event, what
    is needed to name it if it later goes missing or changes (id, record id, content hash).

    Checkpoints chain: each statement includes the hash of the previous one.
    """

    id = models.BigAutoField(primary_key=True)
    sequence = models.PositiveBigIntegerField(unique=True)
    kind = models.CharField(max_length=16, choices=CheckpointKind.choices)
    first_event_id = models.BigIntegerField(null=True, blank=True)
    last_event_id = models.BigIntegerField(null=True, blank=True)
    event_count = models.PositiveIntegerField()
    merkle_root = models.CharField(max_length=64)
    # Packed entries, 56 bytes each: event id (8, big endian), record id (16), content hash (32).
    entries = models.BinaryField()
    statement = models.JSONField(help_text="What the signature covers (canonical JSON).")
    statement_hash = models.CharField(max_length=64)
    signature = models.CharField(max_length=100)
    key = models.ForeignKey(CheckpointKey, on_delete=models.PROTECT, related_name="checkpoints")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["sequence"]

    def __str__(self) -> str:
        return f"checkpoint {self.sequence} ({self.kind}, {self.event_count} events)"


class RetentionPolicy(models.Model):
    """How long audit events are kept: for one agent, or for the agents of an environment."""

    id = models.BigAutoField(primary_key=True)
    environment = models.CharField(max_length=64, blank=True, help_text="Environment name; blank when per agent.")
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    days = models.PositiveIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["environment", "agent__name"]
        verbose_name_plural = "retention policies"
        constraints = [
            models.UniqueConstraint(
                fields=["environment"], condition=models.Q(agent__isnull=True), name="audit_retention_env_once"
            ),
            models.UniqueConstraint(fields=["agent"], name="audit_retention_agent_once"),
            models.CheckConstraint(
                condition=(models.Q(agent__isnull=True) & ~models.Q(environment=""))
                | (models.Q(agent__isnull=False) & models.Q(environment="")),
                name="audit_retention_agent_xor_environment",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id or self.environment}: {self.days} days"


class AuditExport(models.Model):
    """Who exported which records, and whether as originals (unmasked): exports are evidence too."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    user_name = models.CharField(max_length=150)
    originals = models.BooleanField(help_text="True if the unmasked records as signed were exported.")
    query = models.CharField(max_length=2000, blank=True, help_text="The filters of the export, as sent.")
    sessions = models.PositiveIntegerField(help_text="Sessions in the export.")
    exported_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{'original' if self.originals else 'masked'} export by {self.user_name} at {self.exported_at}"
