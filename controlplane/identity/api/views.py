from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.accounts.roles import Role
from controlplane.core.api import validated
from controlplane.core.viewsets import WardenViewSet
from controlplane.identity import services
from controlplane.identity.api.filters import AgentFilter, AgentKeyFilter
from controlplane.identity.api.serializers import (
    AgentKeyCreateSerializer,
    AgentKeySerializer,
    AgentSerializer,
    AgentUpdateSerializer,
    EnvironmentDeliverySerializer,
    KeyRevokeSerializer,
    KeyRotationResultSerializer,
    KillSwitchResultSerializer,
    StatusChangeSerializer,
)
from controlplane.identity.models import Agent, AgentKey

KILL_SWITCH_ROLES = (Role.ADMIN, Role.APPROVER)
NAME_PATTERN = r"[a-z0-9_-]+"


class AgentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, WardenViewSet):
    """AI agents: registration, profile, scopes and the kill switch (suspend, resume, revoke).

    Agents are never deleted, so the audit trail always resolves to one; revoke retires them.
    """

    queryset = Agent.objects.prefetch_related(Prefetch("keys", queryset=AgentKey.objects.order_by("created_at")))
    serializer_class = AgentSerializer
    lookup_field = "name"
    lookup_value_regex = NAME_PATTERN
    filterset_class = AgentFilter
    search_fields = ["name", "display_name", "description", "owner_email", "team"]
    ordering_fields = ["name", "created_at", "updated_at", "status", "risk_tier"]
    action_roles = {"suspend": KILL_SWITCH_ROLES, "resume": KILL_SWITCH_ROLES, "revoke": KILL_SWITCH_ROLES}

    @extend_schema(request=AgentSerializer, responses={201: AgentSerializer})
    def create(self, request):
        data = validated(AgentSerializer, request)
        agent = services.register_agent(by=request.user, **data)
        return Response(self.rendered(agent), status=status.HTTP_201_CREATED)

    @extend_schema(request=AgentUpdateSerializer, responses={200: AgentSerializer})
    def partial_update(self, request, name=None):
        data = validated(AgentUpdateSerializer, request, partial=True)
        agent = services.update_agent(self.get_object(), by=request.user, **data)
        return Response(self.rendered(agent))

    @extend_schema(request=StatusChangeSerializer, responses={200: KillSwitchResultSerializer})
    @action(detail=True, methods=["post"])
    def suspend(self, request, name=None):
        """Kill switch: the agent is denied everything from the next bundle activation on.

        Delivered before the answer: the affected bundles are rebuilt and activated, and the
        answer names their revision and which engines run it; 503 if a rebuild failed.
        """
        return self._change_status(request, services.suspend)

    @extend_schema(request=StatusChangeSerializer, responses={200: KillSwitchResultSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request, name=None):
        """Lift a suspension.

        Delivered before the answer: the affected bundles are rebuilt and activated, and the
        answer names their revision and which engines run it; 503 if a rebuild failed.
        """
        return self._change_status(request, services.resume)

    @extend_schema(request=StatusChangeSerializer, responses={200: KillSwitchResultSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, name=None):
        """Retire the agent for good and revoke all its keys.

        Delivered before the answer: the affected bundles are rebuilt and activated, and the
        answer names their revision and which engines run it; 503 if a rebuild failed.
        """
        return self._change_status(request, services.revoke)

    @extend_schema(request=AgentKeyCreateSerializer, responses={201: KeyRotationResultSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-key")
    def rotate_key(self, request, name=None):
        """Register a new public key and revoke the agent's other active keys in one step."""
        data = validated(AgentKeyCreateSerializer, request)
        new_key, replaced = services.rotate_agent_key(self.get_object(), by=request.user, **data)
        body = {"key": AgentKeySerializer(new_key).data, "revoked": AgentKeySerializer(replaced, many=True).data}
        return Response(body, status=status.HTTP_201_CREATED)

    def _change_status(self, request, service):
        data = validated(StatusChangeSerializer, request)
        outcome = service(self.get_object(), by=request.user, **data)
        delivery = EnvironmentDeliverySerializer(outcome.delivery, many=True).data
        return Response(self.rendered(outcome.agent, AgentSerializer) | {"delivery": delivery})


class AgentKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, WardenViewSet):
    """The Ed25519 public keys of one agent. Keys are revoked, never deleted."""

    serializer_class = AgentKeySerializer
    lookup_field = "key_id"
    lookup_value_regex = r"[0-9a-f]{64}"
    filterset_class = AgentKeyFilter
    ordering_fields = ["created_at", "revoked_at"]
    parent_lookup = (Agent, "agent_name", "name")

    def get_queryset(self):
        return AgentKey.objects.filter(agent__name=self.kwargs.get("agent_name")).select_related("agent", "created_by")

    @extend_schema(request=AgentKeyCreateSerializer, responses={201: AgentKeySerializer})
    def create(self, request, agent_name=None):
        data = validated(AgentKeyCreateSerializer, request)
        key = services.add_agent_key(self.parent, by=request.user, **data)
        return Response(AgentKeySerializer(key).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=KeyRevokeSerializer, responses={200: AgentKeySerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, agent_name=None, key_id=None):
        data = validated(KeyRevokeSerializer, request)
        key = services.revoke_agent_key(self.get_object(), by=request.user, **data)
        return Response(AgentKeySerializer(key).data)
