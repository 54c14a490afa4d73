from rest_framework import serializers

from controlplane.identity.api.serializers import scope_field
from controlplane.identity.validators import MAX_SCOPES
from controlplane.policies.models import MODULE_PATH_PATTERN, TOOL_NAME_PATTERN, PolicyModule, PolicyRevision, Tool
from controlplane.policies.services import MAX_MODULE_BYTES


class PolicyRevisionSerializer(serializers.ModelSerializer):
    author = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    number = serializers.IntegerField(read_only=True)

    class Meta:
        model = PolicyRevision
        fields = ["id", "number", "sha256", "message", "author", "created_at", "diff", "source", "relaxations"]
        read_only_fields = fields


class PolicyModuleSerializer(serializers.ModelSerializer):
    revision = serializers.IntegerField(source="current_revision.number", read_only=True, allow_null=True)
    source = serializers.CharField(source="current_revision.source", read_only=True, allow_null=True)
    author = serializers.CharField(source="current_revision.author.username", read_only=True, default=None, allow_null=True)
    relaxations = serializers.ListField(
        child=serializers.DictField(), source="current_revision.relaxations", read_only=True, default=list,
        help_text="Replayed inputs the current revision made less strict; empty when it relaxes nothing.",
    )

    class Meta:
        model = PolicyModule
        fields = [
            "id", "path", "bundle_path", "package", "revision", "author", "is_deleted", "created_at", "updated_at",
            "source", "relaxations",
        ]
        read_only_fields = fields


class PolicyModuleCreateSerializer(serializers.Serializer):
    path = serializers.RegexField(
        MODULE_PATH_PATTERN, max_length=200,
        error_messages={"invalid": "must be a relative .rego file name of lowercase words, e.g. 'finance/refunds.rego'"},
    )
    source = serializers.CharField(max_length=MAX_MODULE_BYTES, trim_whitespace=False)
    message = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class PolicyModuleUpdateSerializer(serializers.Serializer):
    source = serializers.CharField(max_length=MAX_MODULE_BYTES, trim_whitespace=False)
    message = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class PolicyDeleteSerializer(serializers.Serializer):
    message = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class PolicyTestResultSerializer(serializers.Serializer):
    test = serializers.CharField()
    passed = serializers.BooleanField()
    message = serializers.CharField(allow_blank=True)


class PolicyTestReportSerializer(serializers.Serializer):
    passed = serializers.IntegerField()
    failed = serializers.IntegerField()
    results = PolicyTestResultSerializer(many=True)


class ToolSerializer(serializers.ModelSerializer):
    name = serializers.RegexField(
        TOOL_NAME_PATTERN, max_length=100,
        error_messages={"invalid": "must start with a lowercase letter: letters, digits, '_', '.', '-'"},
    )
    scopes = serializers.ListField(child=scope_field(), max_length=MAX_SCOPES, required=False)
    calls_per_minute = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False, allow_null=True)
    calls_per_hour = serializers.IntegerField(min_value=1, max_value=100_000_000, required=False, allow_null=True)

    class Meta:
        model = Tool
        fields = [
            "id", "name", "description", "scopes", "category", "irreversible", "calls_per_minute", "calls_per_hour",
            "sandbox_required", "sandbox_profile", "args_schema", "created_at", "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


class ToolUpdateSerializer(ToolSerializer):
    name = serializers.CharField(read_only=True)
