from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.accounts import services
from controlplane.accounts.api.serializers import (
    APITokenCreatedSerializer,
    APITokenCreateSerializer,
    APITokenSerializer,
    UserCreateSerializer,
    UserSerializer,
    UserUpdateSerializer,
)
from controlplane.accounts.models import APIToken
from controlplane.accounts.roles import ALL_ROLES, Role, roles_of
from controlplane.core.api import validated
from controlplane.core.exceptions import InvalidInput

User = get_user_model()


class UserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """People and service accounts. Only admins see or change them; everyone may read `me`."""

    queryset = User.objects.prefetch_related("groups").order_by("username")
    serializer_class = UserSerializer
    lookup_field = "username"
    lookup_value_regex = r"[\w.@+-]+"
    read_roles = (Role.ADMIN,)
    action_roles = {"me": ALL_ROLES}
    filterset_fields = ["is_active"]
    search_fields = ["username", "email", "first_name", "last_name"]
    ordering_fields = ["username", "date_joined", "last_login"]

    @extend_schema(request=UserCreateSerializer, responses={201: UserSerializer})
    def create(self, request):
        data = validated(UserCreateSerializer, request)
        user = services.create_user(by=request.user, **data)
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=UserUpdateSerializer, responses={200: UserSerializer})
    def partial_update(self, request, username=None):
        user = self.get_object()
        data = validated(UserUpdateSerializer, request)
        user = services.update_user(user, by=request.user, **data)
        return Response(UserSerializer(user).data)

    @extend_schema(responses={200: UserSerializer})
    @action(detail=False, methods=["get"])
    def me(self, request):
        """The caller's own account and roles."""
        return Response(UserSerializer(request.user).data)


class APITokenViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """API tokens. Everyone manages their own; admins see all and issue tokens to service accounts."""

    serializer_class = APITokenSerializer
    write_roles = ALL_ROLES
    filterset_fields = ["name"]
    ordering_fields = ["created_at", "last_used_at"]

    lookup_value_regex = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

    def get_queryset(self):
        tokens = APIToken.objects.select_related("user")
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return tokens.none()
        if Role.ADMIN in roles_of(self.request.user):
            username = self.request.query_params.get("user")
            return tokens.filter(user__username=username) if username else tokens
        return tokens.filter(user=self.request.user)

    @extend_schema(request=APITokenCreateSerializer, responses={201: APITokenCreatedSerializer})
    def create(self, request):
        data = validated(APITokenCreateSerializer, request)
        owner = request.user
        username = data.pop("user", None)
        if username and username != request.user.username:
            if Role.ADMIN not in roles_of(request.user):
                raise InvalidInput("only admins issue tokens to other users", field="user")
            owner = User.objects.filter(username=username, is_active=True).first()
            if owner is None:
                raise InvalidInput(f"no active user named {username!r}", field="user")
        token, plaintext = services.create_token(user=owner, by=request.user, **data)
        body = APITokenCreatedSerializer(token).data | {"token": plaintext}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None}, description="Revoke the token. It stays listed, with revoked_at set.")
    def destroy(self, request, pk=None):
        services.revoke_token(self.get_object(), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
