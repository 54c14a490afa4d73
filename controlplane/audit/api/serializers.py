from rest_framework import serializers

from controlplane.audit.models import AuditEvent, Batch, Checkpoint, QuarantinedRecord, RetentionPolicy


class BatchAcceptedSerializer(serializers.Serializer):
    batch_id = serializers.IntegerField()
    accepted = serializers.IntegerField(help_text="Records stored durably and queued for verification.")


class BatchSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.name")

    class Meta:
        model = Batch
        fields = [
            "id", "agent", "key_id", "record_count", "byte_count", "received_at", "status", "attempts",
            "started_at", "verified_at", "event_count", "quarantined_count", "problem",
        ]


class AuditEventSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.name")
    status = serializers.SerializerMethodField(help_text="verified, or checkpointed once a signed checkpoint covers it")

    class Meta:
        model = AuditEvent
        fields = [
            "id", "record_id", "agent", "key_id", "session_id", "seq", "kind", "time", "tool", "effect",
            "rule_ids", "payload", "masked_paths", "prev_hash", "record_hash", "batch", "stored_at", "status",
        ]

    def get_status(self, event) -> str:
        return "checkpointed" if event.pk <= self.context.get("checkpointed_upto", 0) else "verified"


class QuarantinedRecordSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.name")

    class Meta:
        model = QuarantinedRecord
        fields = [
            "id", "batch", "position", "agent", "reason", "message", "record_id", "session_id", "seq", "key_id",
            "time", "raw", "quarantined_at",
        ]


class CheckpointSerializer(serializers.ModelSerializer):
    key_id = serializers.CharField(source="key.key_id")

    class Meta:
        model = Checkpoint
        fields = [
            "sequence", "kind", "first_event_id", "last_event_id", "event_count", "merkle_root", "statement",
            "statement_hash", "signature", "key_id", "created_at",
        ]


class CheckpointKeySerializer(serializers.Serializer):
    key_id = serializers.CharField()
    public_key = serializers.CharField(help_text="Base64 of the 32 raw Ed25519 public key bytes.")
    algorithm = serializers.CharField(default="Ed25519")
    created_at = serializers.DateTimeField()
    is_active = serializers.BooleanField()


class RetentionPolicySerializer(serializers.ModelSerializer):
    agent = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)

    class Meta:
        model = RetentionPolicy
        fields = ["id", "environment", "agent", "days", "updated_at"]


class RetentionPolicyWriteSerializer(serializers.Serializer):
    environment = serializers.CharField(required=False, allow_blank=True, default="", max_length=64)
    agent = serializers.CharField(required=False, allow_blank=True, default="", max_length=64)
    days = serializers.IntegerField(min_value=1, max_value=36500)


class TimelineEntrySerializer(serializers.Serializer):
    source = serializers.ChoiceField(choices=["event", "quarantine", "opa_decision"])
    status = serializers.CharField()
    id = serializers.IntegerField()
    time = serializers.DateTimeField(allow_null=True)
    seq = serializers.IntegerField(allow_null=True)
    kind = serializers.CharField(allow_null=True)


class TimelineSerializer(serializers.Serializer):
    agent = serializers.CharField()
    session = serializers.CharField()
    count = serializers.IntegerField()
    entries = TimelineEntrySerializer(many=True)


class ProblemSerializer(serializers.Serializer):
    problem = serializers.CharField()
    message = serializers.CharField()
    event_id = serializers.IntegerField(allow_null=True)
    record_id = serializers.CharField(allow_null=True)
    checkpoint = serializers.IntegerField(allow_null=True)
    fields = serializers.ListField(child=serializers.CharField())
    through_event_id = serializers.IntegerField(allow_null=True)


class VerificationReportSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    checkpoints = serializers.IntegerField()
    events_checked = serializers.IntegerField()
    events_removed_by_retention = serializers.IntegerField()
    events_not_checkpointed = serializers.IntegerField()
    key_source = serializers.ChoiceField(
        ["pinned", "given", "database"],
        help_text="where the trusted checkpoint keys came from; 'database' means nothing is pinned (weaker)",
    )
    witness_entries = serializers.IntegerField(help_text="lines of the witness file checked")
    first_affected_event_id = serializers.IntegerField(allow_null=True)
    last_affected_event_id = serializers.IntegerField(allow_null=True)
    first_affected_checkpoint = serializers.IntegerField(allow_null=True)
    last_affected_checkpoint = serializers.IntegerField(allow_null=True)
    problems = ProblemSerializer(many=True)


class CheckpointHeadSerializer(serializers.Serializer):
    sequence = serializers.IntegerField()
    kind = serializers.CharField()
    last_event_id = serializers.IntegerField(allow_null=True)
    event_count = serializers.IntegerField()
    merkle_root = serializers.CharField()
    created_at = serializers.CharField()
    key_id = serializers.CharField()
    statement_hash = serializers.CharField()
    signature = serializers.CharField()
    statement = serializers.DictField(help_text="the signed statement (its canonical JSON is what the signature covers)")
