from rest_framework import serializers

from controlplane.bundles.models import (
    Bundle,
    BundleActivation,
    Environment,
    EnvironmentToken,
    SigningKey,
    default_policy_settings,
)
from controlplane.identity.validators import ENVIRONMENT_PATTERN

PATH_LIST_MAX = 200


class BundleSerializer(serializers.ModelSerializer):
    environment = serializers.SlugRelatedField(slug_field="name", read_only=True)
    signing_key = serializers.PrimaryKeyRelatedField(read_only=True)
    built_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    # Declared so the schema does not depend on the database's integer range.
    size = serializers.IntegerField(read_only=True)
    tests_passed = serializers.IntegerField(read_only=True)

    class Meta:
        model = Bundle
        fields = [
            "id", "environment", "revision", "etag", "size", "manifest", "files", "signing_key", "tests_passed",
            "built_by", "reason", "created_at",
        ]
        read_only_fields = fields


class BundleSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Bundle
        fields = ["id", "revision", "etag", "created_at", "reason"]
        read_only_fields = fields


class RateLimitsSerializer(serializers.Serializer):
    calls_per_minute = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False)
    calls_per_hour = serializers.IntegerField(min_value=1, max_value=100_000_000, required=False)


class PolicySettingsSerializer(serializers.Serializer):
    """Organisation facts the policy library reads (see docs/policies.md)."""

    protected_paths = serializers.ListField(
        child=serializers.RegexField(r"^/\S{0,500}$", error_messages={"invalid": "must start with /"}),
        max_length=PATH_LIST_MAX,
    )
    destructive_file_tools = serializers.ListField(
        child=serializers.RegexField(r"^[a-z][a-z0-9_.\-]{0,99}$"), max_length=PATH_LIST_MAX
    )
    protected_branches = serializers.ListField(
        child=serializers.CharField(max_length=200), max_length=PATH_LIST_MAX
    )
    internal_email_domains = serializers.ListField(
        child=serializers.RegexField(r"^[a-z0-9.\-]{1,253}$", error_messages={"invalid": "must be a domain"}),
        max_length=PATH_LIST_MAX,
    )
    rate_limits = RateLimitsSerializer()

    def to_representation(self, instance):
        # Rows saved before partial updates were merged may lack keys: show the defaults.
        return super().to_representation({**default_policy_settings(), **(instance or {})})


def merged_policy_settings(current: dict, change: dict) -> dict:
    """`change` laid over `current` (one level deeper for rate_limits), as the full settings."""
    merged = {**default_policy_settings(), **(current or {})}
    for key, value in change.items():
        if key == "rate_limits" and isinstance(value, dict):
            value = {**(merged.get("rate_limits") or {}), **value}
        merged[key] = value
    return merged


class EnvironmentSerializer(serializers.ModelSerializer):
    name = serializers.RegexField(
        ENVIRONMENT_PATTERN.pattern, max_length=32,
        error_messages={"invalid": "lowercase letters, digits and '-', e.g. 'prod'"},
    )
    # Null until the first publish or promotion.
    active_bundle = BundleSummarySerializer(read_only=True, allow_null=True)
    position = serializers.IntegerField(min_value=0, max_value=1000, required=False)
    policy_settings = PolicySettingsSerializer(required=False)

    class Meta:
        model = Environment
        fields = [
            "id", "name", "description", "position", "decision_logging", "policy_settings", "active_bundle",
            "created_at", "updated_at",
        ]
        read_only_fields = ["id", "active_bundle", "created_at", "updated_at"]


class EnvironmentUpdateSerializer(EnvironmentSerializer):
    """A PATCH: `policy_settings` may name only the keys that change; they are merged with the
    environment's current settings and the result validated whole, before anything is saved."""

    name = serializers.CharField(read_only=True)

    def validate_policy_settings(self, value):
        current = self.instance.policy_settings if self.instance is not None else {}
        full = PolicySettingsSerializer(data=merged_policy_settings(current, self.initial_data["policy_settings"]))
        full.is_valid(raise_exception=True)
        return full.validated_data


class RollbackSerializer(serializers.Serializer):
    message = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class PublishSerializer(RollbackSerializer):
    impact_preview = serializers.UUIDField(required=False, allow_null=True, default=None,
                                           help_text="A finished impact preview of exactly the policies to publish.")
    override_reason = serializers.CharField(
        max_length=300, required=False, allow_blank=True, default="",
        help_text="Why this publish goes without an impact preview; kept in the change log.",
    )
    log_only = serializers.BooleanField(
        required=False, default=False,
        help_text="Roll the revision out log-only: its new organisation rules are logged, not enforced.",
    )


class PromoteSerializer(RollbackSerializer):
    to = serializers.SlugRelatedField(slug_field="name", queryset=Environment.objects.all())


class ActivationSerializer(serializers.ModelSerializer):
    bundle = BundleSummarySerializer(read_only=True)
    previous_revision = serializers.CharField(source="previous_bundle.revision", read_only=True, default=None, allow_null=True)
    activated_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = BundleActivation
        fields = ["id", "bundle", "previous_revision", "activated_by", "reason", "activated_at"]
        read_only_fields = fields


class EnvironmentTokenSerializer(serializers.ModelSerializer):
    environment = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = EnvironmentToken
        fields = ["id", "environment", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class EnvironmentTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class EnvironmentTokenCreatedSerializer(EnvironmentTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The plaintext bearer token. Shown only in this answer.")

    class Meta(EnvironmentTokenSerializer.Meta):
        fields = EnvironmentTokenSerializer.Meta.fields + ["token"]
        read_only_fields = fields


class SigningKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = SigningKey
        fields = ["kid", "algorithm", "public_key_pem", "is_active", "created_at", "retired_at"]
        read_only_fields = fields
