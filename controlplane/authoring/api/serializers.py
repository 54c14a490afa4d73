from rest_framework import serializers

from controlplane.authoring.models import AuthoredRule, ImpactPreview
from controlplane.authoring.services import edited_as_rego
from controlplane.core.api import UTCDateTimeField


class TemplateSerializer(serializers.Serializer):
    key = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    schema = serializers.JSONField()


class DraftRequestSerializer(serializers.Serializer):
    template = serializers.CharField(max_length=32)
    params = serializers.DictField()
    examples = serializers.ListField(child=serializers.DictField(), required=False, default=list, max_length=50)


class TestResultSerializer(serializers.Serializer):
    test = serializers.CharField()
    passed = serializers.BooleanField()
    message = serializers.CharField(allow_blank=True, allow_null=True)


class DraftSerializer(serializers.Serializer):
    sentence = serializers.CharField()
    module = serializers.CharField()
    tests = serializers.CharField()
    test_results = TestResultSerializer(many=True)


class AuthoredRuleWriteSerializer(DraftRequestSerializer):
    message = serializers.CharField(max_length=300, required=False, default="", allow_blank=True)


class AuthoredRuleSerializer(serializers.ModelSerializer):
    module_path = serializers.CharField(source="module.path", read_only=True, default=None, allow_null=True)
    source = serializers.CharField(source="module.current_revision.source", read_only=True, default=None, allow_null=True)
    tests = serializers.CharField(source="test_module.current_revision.source", read_only=True, default=None, allow_null=True)
    edited_as_rego = serializers.SerializerMethodField()

    class Meta:
        model = AuthoredRule
        fields = [
            "id", "name", "template", "params", "examples", "sentence", "log_only", "module", "module_path",
            "source", "tests", "edited_as_rego", "created_at", "updated_at",
        ]

    def get_edited_as_rego(self, rule: AuthoredRule) -> bool:
        return edited_as_rego(rule)


class LogOnlySerializer(serializers.Serializer):
    log_only = serializers.BooleanField()
    message = serializers.CharField(max_length=300, required=False, default="", allow_blank=True)


class PreviewRequestSerializer(serializers.Serializer):
    environment = serializers.SlugField(max_length=32)
    window_start = UTCDateTimeField(required=False, allow_null=True, default=None)
    window_end = UTCDateTimeField(required=False, allow_null=True, default=None)


class ImpactPreviewSerializer(serializers.ModelSerializer):
    environment = serializers.CharField(source="environment.name", read_only=True)
    progress = serializers.IntegerField(read_only=True)
    requested_by = serializers.CharField(source="requested_by.username", read_only=True, default=None, allow_null=True)
    second_person = serializers.CharField(source="second_person.username", read_only=True, default=None, allow_null=True)
    needs_second_person = serializers.SerializerMethodField()
    bundle_revision = serializers.CharField(source="bundle.revision", read_only=True, default=None, allow_null=True)

    class Meta:
        model = ImpactPreview
        fields = [
            "id", "environment", "status", "progress", "window_start", "window_end", "candidate_digest", "total",
            "unique_inputs", "processed", "sources", "changes", "samples", "relaxations", "needs_second_person",
            "duration_ms", "error", "requested_by", "second_person", "released_at", "bundle", "bundle_revision",
            "created_at", "finished_at",
        ]

    def get_needs_second_person(self, preview: ImpactPreview) -> bool:
        from controlplane.authoring.previews import needs_second_person

        return needs_second_person(preview)


class PublishPreviewSerializer(serializers.Serializer):
    message = serializers.CharField(max_length=300, required=False, default="", allow_blank=True)
    log_only = serializers.BooleanField(
        required=False, default=False,
        help_text="Roll the revision out log-only: its new organisation rules are logged, not enforced.",
    )


class LogOnlyEffectsSerializer(serializers.Serializer):
    environment = serializers.CharField()
    since = serializers.CharField()
    decisions = serializers.IntegerField()
    rules = serializers.ListField(child=serializers.DictField())
