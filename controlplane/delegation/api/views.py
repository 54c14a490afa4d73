from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.core.api import validated
from controlplane.core.exceptions import InvalidInput
from controlplane.core.viewsets import WardenViewSet
from controlplane.delegation import selectors, services
from controlplane.delegation.api.serializers import (
    DelegationRuleSerializer,
    LinkedSessionsSerializer,
    PersonGrantCreateSerializer,
    PersonGrantSerializer,
    RevocationCreateSerializer,
    RevocationSerializer,
)
from controlplane.delegation.models import DelegationRule, PersonGrant, Revocation
from controlplane.identity.models import Agent


class DelegationRuleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, WardenViewSet):
    """Per agent: which agents it may delegate to, the deepest chain below it and the longest grant."""

    queryset = DelegationRule.objects.select_related("agent", "updated_by")
    serializer_class = DelegationRuleSerializer
    lookup_field = "agent__name"
    lookup_url_kwarg = "agent"
    lookup_value_regex = r"[a-z0-9_-]+"

    @extend_schema(request=DelegationRuleSerializer, responses={200: DelegationRuleSerializer})
    def update(self, request, agent=None):
        data = validated(DelegationRuleSerializer, request)
        rule = services.set_rule(get_object_or_404(Agent, name=agent), by=request.user, **data)
        return Response(self.rendered(rule))


class PersonGrantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, WardenViewSet):
    """Grants people issue to agents (signed by the control plane's delegation authority)."""

    queryset = PersonGrant.objects.select_related("audience", "issued_by")
    serializer_class = PersonGrantSerializer
    lookup_value_regex = r"[0-9a-f]{64}"

    @extend_schema(request=PersonGrantCreateSerializer, responses={201: PersonGrantSerializer})
    def create(self, request):
        data = validated(PersonGrantCreateSerializer, request)
        audience = Agent.objects.filter(name=data.pop("audience")).first()
        if audience is None:
            raise InvalidInput("no agent of that name", field="audience")
        if "constraints" in data:
            data["constraints"] = dict(data["constraints"])
        grant = services.issue_person_grant(by=request.user, audience=audience, **data)
        return Response(self.rendered(grant), status=status.HTTP_201_CREATED)


class RevocationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, WardenViewSet):
    """Grants withdrawn before expiry; they travel in every bundle until they would have expired."""

    queryset = Revocation.objects.select_related("revoked_by")
    serializer_class = RevocationSerializer

    @extend_schema(request=RevocationCreateSerializer, responses={201: RevocationSerializer})
    def create(self, request):
        data = validated(RevocationCreateSerializer, request)
        revocation = services.revoke_grant(by=request.user, **data)
        return Response(self.rendered(revocation), status=status.HTTP_201_CREATED)


class LinkedSessionsView(APIView):
    """The sessions a session was delegated from (root first) and those it delegated to."""

    @extend_schema(parameters=[OpenApiParameter("session_id", str, required=True)],
                   responses={200: LinkedSessionsSerializer})
    def get(self, request):
        session_id = request.query_params.get("session_id", "")
        if not session_id or len(session_id) > 200:
            raise InvalidInput("a session id of 1 to 200 characters is required", field="session_id")
        return Response(LinkedSessionsSerializer(selectors.linked_sessions(session_id)).data)
