from rest_framework import serializers

from controlplane.identity.models import Agent, AgentKey, RiskTier
from controlplane.identity.validators import (
    AGENT_NAME_PATTERN,
    ENVIRONMENT_PATTERN,
    MAX_ENVIRONMENTS,
    MAX_SCOPES,
    SCOPE_PATTERN,
)


def scope_field() -> serializers.RegexField:
    return serializers.RegexField(
        SCOPE_PATTERN.pattern,
        max_length=128,
        error_messages={"invalid": "not a scope: use 'verb:resource' in lowercase, e.g. 'read:tickets'"},
    )


def environment_field() -> serializers.RegexField:
    return serializers.RegexField(
        ENVIRONMENT_PATTERN.pattern,
        max_length=32,
        error_messages={"invalid": "not an environment name: lowercase letters, digits and '-', e.g. 'prod'"},
    )


class AgentKeySerializer(serializers.ModelSerializer):
    agent = serializers.SlugRelatedField(slug_field="name", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = AgentKey
        fields = [
            "key_id", "agent", "public_key", "label", "is_active", "created_at", "created_by",
            "revoked_at", "revoked_reason",
        ]
        read_only_fields = fields


class AgentKeyCreateSerializer(serializers.Serializer):
    public_key = serializers.CharField(
        max_length=1000, trim_whitespace=True,
        help_text="Ed25519 public key: base64 of the 32 raw bytes, or a PEM block.",
    )
    label = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class AgentSerializer(serializers.ModelSerializer):
    name = serializers.RegexField(
        AGENT_NAME_PATTERN.pattern,
        max_length=64,
        error_messages={"invalid": "must be a slug: lowercase letters, digits, '-' or '_', e.g. 'support-bot'"},
    )
    scopes = serializers.ListField(child=scope_field(), max_length=MAX_SCOPES, required=False)
    environments = serializers.ListField(child=environment_field(), max_length=MAX_ENVIRONMENTS, required=False)
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices, required=False)
    active_keys = serializers.SerializerMethodField()

    class Meta:
        model = Agent
        fields = [
            "id", "name", "display_name", "owner_email", "team", "description", "scopes", "risk_tier",
            "environments", "egress_allow_hosts", "shell_allow_commands", "sandbox_profile", "status", "status_reason", "status_changed_at", "active_keys",
            "created_at", "updated_at",
        ]
        read_only_fields = ["id", "status", "status_reason", "status_changed_at", "created_at", "updated_at"]

    def get_active_keys(self, agent: Agent) -> list[str]:
        return [key.key_id for key in agent.keys.all() if key.revoked_at is None]

    def validate_scopes(self, value):
        if len(set(value)) != len(value):
            raise serializers.ValidationError("scopes must not repeat")
        return value

    def validate_environments(self, value):
        if len(set(value)) != len(value):
            raise serializers.ValidationError("environments must not repeat")
        return value


class AgentUpdateSerializer(AgentSerializer):
    name = serializers.CharField(read_only=True)

    class Meta(AgentSerializer.Meta):
        read_only_fields = AgentSerializer.Meta.read_only_fields + ["name"]


class StatusChangeSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class KeyRevokeSerializer(StatusChangeSerializer):
    pass


class KeyRotationResultSerializer(serializers.Serializer):
    key = AgentKeySerializer()
    revoked = AgentKeySerializer(many=True)


class EngineDeliverySerializer(serializers.Serializer):
    instance_id = serializers.CharField(help_text="labels.id of the OPA or sidecar, from its status reports.")
    active_revision = serializers.CharField(help_text="The revision it last reported running.")
    has_change = serializers.BooleanField(help_text="It runs the revision that carries the change.")
    last_seen = serializers.DateTimeField()


class EnvironmentDeliverySerializer(serializers.Serializer):
    environment = serializers.CharField()
    revision = serializers.CharField(help_text="The active revision, which carries the change.")
    built_at = serializers.CharField(help_text="Its signed build time (manifest metadata.warden.built_at).")
    engines_with_change = serializers.IntegerField()
    engines = EngineDeliverySerializer(many=True)


class KillSwitchResultSerializer(AgentSerializer):
    """The agent after the change, and where the change has been delivered."""

    delivery = EnvironmentDeliverySerializer(
        many=True, read_only=True,
        help_text="Per environment the agent runs in: the bundle revision that carries the change (already "
        "active when this answer is sent) and which engines run it according to their latest status reports.",
    )

    class Meta(AgentSerializer.Meta):
        fields = AgentSerializer.Meta.fields + ["delivery"]
        read_only_fields = AgentSerializer.Meta.fields + ["delivery"]
