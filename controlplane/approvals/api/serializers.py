from rest_framework import serializers

from agents_sdk.guard.inputs import input_problem

from controlplane.approvals.models import (
    ApprovalKind,
    ApprovalRequest,
    ApprovalRule,
    ApprovalState,
    ApprovalVote,
    ReleaseGate,
    WebhookDelivery,
    WebhookEndpoint,
)

MAX_REASONS = 50
MAX_ARGS_DEPTH = 32
MAX_ARGS_BYTES = 64 * 1024


class ReasonSerializer(serializers.Serializer):
    rule = serializers.CharField(max_length=200)
    message = serializers.CharField(max_length=2000, allow_blank=True)
    controls = serializers.ListField(child=serializers.CharField(max_length=100), max_length=50, required=False)


class AgentRequestSerializer(serializers.Serializer):
    """What an agent files for a held call (agents_sdk.approvals.ApprovalClient.request_body)."""

    idempotency_key = serializers.RegexField(r"^[0-9a-f]{64}$")
    environment = serializers.SlugField(max_length=32)
    session_id = serializers.CharField(max_length=200, allow_blank=True, required=False, default="")
    tool = serializers.CharField(max_length=200)
    args = serializers.DictField()
    masked_args = serializers.DictField()
    args_sha256 = serializers.RegexField(r"^[0-9a-f]{64}$")
    reasons = ReasonSerializer(many=True, max_length=MAX_REASONS)
    on_behalf_of = serializers.ListField(child=serializers.CharField(max_length=200), max_length=20, required=False)
    decision_id = serializers.CharField(max_length=100, allow_blank=True, required=False, default="")

    def _hygienic(self, value: dict) -> dict:
        # What the engines and the audit store cannot take is refused here, naming the field.
        problem = input_problem(value, max_depth=MAX_ARGS_DEPTH, max_bytes=MAX_ARGS_BYTES)
        if problem is not None:
            raise serializers.ValidationError(problem)
        return value

    def validate_args(self, value: dict) -> dict:
        return self._hygienic(value)

    def validate_masked_args(self, value: dict) -> dict:
        return self._hygienic(value)


class VoteSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ApprovalVote
        fields = ["user", "verdict", "comment", "created_at"]


class GrantSerializer(serializers.Serializer):
    id = serializers.CharField(source="grant_id")
    token = serializers.CharField(source="grant_token")
    expires_at = serializers.DateTimeField(source="grant_expires_at")
    consumed_at = serializers.DateTimeField(allow_null=True)


class ApprovalRequestSerializer(serializers.ModelSerializer):
    """A request as people and its agent see it: masked arguments only, never the raw ones."""

    agent = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    votes = VoteSerializer(many=True, read_only=True)
    decided_by = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    grant = serializers.SerializerMethodField()

    class Meta:
        model = ApprovalRequest
        fields = [
            "id", "kind", "state", "agent", "requested_by", "environment", "session_id", "tool", "tool_category",
            "masked_args", "args_sha256", "reasons", "controls", "on_behalf_of", "release", "quorum",
            "approver_team", "created_at", "expires_at", "sla_due_at", "decided_at", "comment", "votes",
            "decided_by", "url", "grant",
        ]
        read_only_fields = fields

    def get_decided_by(self, obj) -> list[str]:
        return [vote.user.username for vote in obj.votes.all()]

    def get_url(self, obj) -> str:
        request = self.context.get("request")
        path = f"/approvals/{obj.pk}"
        return request.build_absolute_uri(path) if request is not None else path

    def get_grant(self, obj) -> dict | None:
        # The grant is for the agent it binds: it travels in its own wait answer and in bundles.
        if not obj.grant_id or not self.context.get("show_grant"):
            return None
        return GrantSerializer(obj).data


class DecisionSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=2000, allow_blank=True, required=False, default="")


class ApprovalRuleSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApprovalRule
        fields = ["id", "environment", "tool_category", "approver_team", "quorum", "request_ttl_seconds",
                  "grant_ttl_seconds", "sla_seconds", "created_at"]
        read_only_fields = ["id", "created_at"]
        # The database's check constraint, refused here with the field named (400, not 409).
        extra_kwargs = {
            "quorum": {"min_value": 1, "max_value": 10},
            "request_ttl_seconds": {"min_value": 1, "max_value": 30 * 86400},
            "grant_ttl_seconds": {"min_value": 1, "max_value": 86400},
            "sla_seconds": {"min_value": 1, "max_value": 30 * 86400},
        }


class WebhookEndpointSerializer(serializers.ModelSerializer):
    secret = serializers.CharField(write_only=True, min_length=16, max_length=200)

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "name", "url", "secret", "is_active", "created_at"]
        read_only_fields = ["id", "is_active", "created_at"]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = ["id", "request", "event", "attempts", "status_code", "last_error", "delivered_at", "created_at"]
        read_only_fields = fields


class ReleaseGateSerializer(serializers.Serializer):
    """An environment's four-eyes gate: whether a release to it waits for a second person."""

    environment = serializers.CharField(source="name", read_only=True)
    four_eyes = serializers.SerializerMethodField()
    configured = serializers.SerializerMethodField(help_text="False: no gate set, the default applies (on for prod).")
    pending_releases = serializers.SerializerMethodField(help_text="Releases to it waiting for a second person.")

    def get_four_eyes(self, environment) -> bool:
        from controlplane.approvals.releases import four_eyes_required

        return four_eyes_required(environment)

    def get_configured(self, environment) -> bool:
        return ReleaseGate.objects.filter(environment=environment).exists()

    def get_pending_releases(self, environment) -> int:
        return ApprovalRequest.objects.filter(kind=ApprovalKind.RELEASE, state=ApprovalState.PENDING,
                                              environment=environment.name).count()


class ReleaseGateUpdateSerializer(serializers.Serializer):
    four_eyes = serializers.BooleanField()
