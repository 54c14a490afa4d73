from rest_framework import serializers

from controlplane.delegation.models import DelegationRule, PersonGrant, Revocation
from controlplane.identity.api.serializers import scope_field

NAME_OR_ANY = r"^(?:\*|[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?)$"


class DelegationRuleSerializer(serializers.ModelSerializer):
    agent = serializers.SlugRelatedField(slug_field="name", read_only=True)
    may_delegate_to = serializers.ListField(child=serializers.RegexField(NAME_OR_ANY, max_length=64), max_length=500)
    max_depth = serializers.IntegerField(min_value=1, max_value=8, allow_null=True, required=False)
    may_act_for = serializers.ListField(
        child=serializers.CharField(max_length=255), max_length=500, required=False,
        help_text='People whose grants the agent accepts: e-mail addresses, "@domain", or "*".',
    )
    max_lifetime_seconds = serializers.IntegerField(min_value=1, max_value=7 * 24 * 3600, allow_null=True, required=False)
    updated_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = DelegationRule
        fields = ["agent", "may_delegate_to", "may_act_for", "max_depth", "max_lifetime_seconds", "updated_at",
                  "updated_by"]
        read_only_fields = ["updated_at"]


class ConstraintsSerializer(serializers.Serializer):
    path_prefix = serializers.CharField(max_length=200, required=False)
    max_amount = serializers.FloatField(min_value=0, required=False)
    recipient_domain = serializers.CharField(max_length=253, required=False)


class PersonGrantCreateSerializer(serializers.Serializer):
    audience = serializers.RegexField(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$", max_length=64)
    scopes = serializers.ListField(child=scope_field(), min_length=1, max_length=256)
    tools = serializers.ListField(child=serializers.RegexField(r"^[A-Za-z0-9_.:/-]{1,128}$"), required=False, max_length=256)
    constraints = ConstraintsSerializer(required=False)
    session = serializers.CharField(max_length=200)
    lifetime_seconds = serializers.IntegerField(min_value=1, max_value=3600, default=600)
    task = serializers.CharField(max_length=200, required=False)


class PersonGrantSerializer(serializers.ModelSerializer):
    audience = serializers.SlugRelatedField(slug_field="name", read_only=True)
    issued_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    revoked = serializers.SerializerMethodField()

    class Meta:
        model = PersonGrant
        fields = ["grant_hash", "audience", "session", "grant", "token", "issued_by", "expires_at", "created_at", "revoked"]

    def get_revoked(self, obj) -> bool:
        return Revocation.objects.filter(grant_hash=obj.grant_hash).exists()


class RevocationCreateSerializer(serializers.Serializer):
    grant_hash = serializers.RegexField(r"^[0-9a-f]{64}$", error_messages={"invalid": "must be 64 lowercase hex digits"})
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class RevocationSerializer(serializers.ModelSerializer):
    revoked_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Revocation
        fields = ["id", "grant_hash", "reason", "expires_at", "revoked_by", "created_at"]


class SessionLinkSerializer(serializers.Serializer):
    principal = serializers.CharField()
    session_id = serializers.CharField(allow_null=True)


class ChildSessionSerializer(serializers.Serializer):
    agent = serializers.CharField()
    session_id = serializers.CharField()
    chain = serializers.ListField(child=serializers.CharField())


class LinkedSessionsSerializer(serializers.Serializer):
    session_id = serializers.CharField()
    agent = serializers.CharField(allow_null=True)
    chain = serializers.ListField(child=serializers.CharField())
    parents = SessionLinkSerializer(many=True)
    children = ChildSessionSerializer(many=True)
