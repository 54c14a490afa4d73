from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from controlplane.accounts.models import APIToken
from controlplane.accounts.roles import ALL_ROLES, roles_of

User = get_user_model()


class UserSerializer(serializers.ModelSerializer):
    roles = serializers.SerializerMethodField()
    # May be empty (service accounts), so not declared with the "email" format.
    email = serializers.CharField(read_only=True, help_text="E-mail address; empty for service accounts.")

    class Meta:
        model = User
        fields = ["id", "username", "email", "first_name", "last_name", "is_active", "roles", "date_joined", "last_login"]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(choices=ALL_ROLES)))
    def get_roles(self, user) -> list[str]:
        return sorted(roles_of(user))


class UserCreateSerializer(serializers.Serializer):
    username = serializers.RegexField(
        r"^[\w.@+-]+\Z", max_length=150, help_text="Letters, digits and @/./+/-/_ only."
    )
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    roles = serializers.ListField(
        child=serializers.ChoiceField(choices=ALL_ROLES), required=False, default=list, max_length=len(ALL_ROLES)
    )
    password = serializers.CharField(
        required=False, write_only=True, max_length=128, style={"input_type": "password"},
        help_text="Leave out for a service account that authenticates by API token only.",
    )


class UserUpdateSerializer(serializers.Serializer):
    email = serializers.EmailField(required=False, allow_blank=True)
    first_name = serializers.CharField(required=False, allow_blank=True, max_length=150)
    last_name = serializers.CharField(required=False, allow_blank=True, max_length=150)
    is_active = serializers.BooleanField(required=False)
    roles = serializers.ListField(
        child=serializers.ChoiceField(choices=ALL_ROLES), required=False, max_length=len(ALL_ROLES)
    )
    password = serializers.CharField(required=False, write_only=True, max_length=128, style={"input_type": "password"})


class APITokenSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = APIToken
        fields = ["id", "name", "user", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class APITokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    user = serializers.CharField(
        required=False, max_length=150,
        help_text="Admins only: issue the token to this user (a service account) instead of yourself.",
    )


class APITokenCreatedSerializer(APITokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The plaintext token. Shown only in this answer.")

    class Meta(APITokenSerializer.Meta):
        fields = APITokenSerializer.Meta.fields + ["token"]
        read_only_fields = fields
