import json

from django.core.cache import cache
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.accounts.roles import Role
from controlplane.approvals import notifications, releases, selectors, services, waiting
from controlplane.approvals.api.serializers import (
    AgentRequestSerializer,
    ApprovalRequestSerializer,
    ApprovalRuleSerializer,
    DecisionSerializer,
    ReleaseGateSerializer,
    ReleaseGateUpdateSerializer,
    WebhookDeliverySerializer,
    WebhookEndpointSerializer,
)
from controlplane.approvals.models import ApprovalRequest, ApprovalRule, ApprovalState, WebhookEndpoint
from controlplane.audit import conf as audit_conf
from controlplane.bundles.models import Environment
from controlplane.audit.authentication import AgentSignatureAuthentication, IsUsableAgent, read_body
from controlplane.core.api import validated
from controlplane.core.viewsets import WardenViewSet

# A held call's request is small; anything larger is refused before it is parsed (413).
MAX_REQUEST_BYTES = 256 * 1024
MAX_WAIT_SECONDS = 60
DECIDER_ROLES = (Role.ADMIN, Role.APPROVER)
AGENT_HEADERS = [
    OpenApiParameter(name, str, OpenApiParameter.HEADER, required=True)
    for name in ("X-Warden-Agent", "X-Warden-Key-Id", "X-Warden-Timestamp", "X-Warden-Signature")
]


class SingleUseAgentSignature(AgentSignatureAuthentication):
    """The agent's upload signature, with a smaller body limit and, for writes, each
    signature accepted once: a captured request replayed within the clock skew is a 409."""

    def authenticate(self, request):
        read_body(request, MAX_REQUEST_BYTES)
        result = super().authenticate(request)
        if request.method == "POST":
            signature = request._request.META.get("HTTP_X_WARDEN_SIGNATURE", "")
            if not cache.add(f"warden:approvals:signature:{signature}", 1, timeout=2 * audit_conf.request_max_skew() + 5):
                raise ReplayedRequest()
        return result


class ReplayedRequest(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "this signed request was already received (replay); sign each request anew"
    default_code = "replayed"


def _json_object(body: bytes) -> dict:
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise exceptions.ValidationError({"non_field_errors": ["the body is not a JSON object"]}) from exc
    if not isinstance(parsed, dict):
        raise exceptions.ValidationError({"non_field_errors": ["the body is not a JSON object"]})
    return parsed


def _decided(call):
    try:
        return call()
    except services.NotEligible as exc:
        raise exceptions.PermissionDenied(exc.message) from exc


class AgentRequestView(APIView):
    """Agents file the request for a held call, signed with their own key (as audit batches)."""

    authentication_classes = [SingleUseAgentSignature]
    permission_classes = [IsUsableAgent]

    @extend_schema(request=AgentRequestSerializer, responses={200: ApprovalRequestSerializer,
                                                              201: ApprovalRequestSerializer},
                   parameters=AGENT_HEADERS, operation_id="approvals_requests_file")
    def post(self, request):
        """File (idempotently: the same held action finds its open request) an approval request."""
        serializer = AgentRequestSerializer(data=_json_object(read_body(request, MAX_REQUEST_BYTES)))
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        filed, created = _decided(lambda: services.file_request(request.user.agent, **data))
        body = ApprovalRequestSerializer(filed, context={"request": request, "show_grant": True}).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class AgentWaitView(APIView):
    """The waiting agent's long poll: held until the request's state changes or `timeout` s."""

    authentication_classes = [SingleUseAgentSignature]
    permission_classes = [IsUsableAgent]

    @extend_schema(responses={200: ApprovalRequestSerializer}, parameters=[
        *AGENT_HEADERS, OpenApiParameter("timeout", int, OpenApiParameter.QUERY, required=False),
    ], operation_id="approvals_requests_wait")
    def get(self, request, pk):
        try:
            timeout = max(0, min(MAX_WAIT_SECONDS, int(request.query_params.get("timeout", "0"))))
        except ValueError as exc:
            raise exceptions.ValidationError({"timeout": ["whole seconds, 0 to 60"]}) from exc
        filed = get_object_or_404(ApprovalRequest, pk=pk, agent=request.user.agent)
        if filed.state == ApprovalState.PENDING:
            services.expire_if_due(filed)
            filed.refresh_from_db()
        if filed.state == ApprovalState.PENDING and timeout:
            waiting.hold_until_changed(str(filed.pk), lambda: _state_of(filed.pk), filed.state, timeout)
        filed = selectors.requests().get(pk=filed.pk)
        return Response(ApprovalRequestSerializer(filed, context={"request": request, "show_grant": True}).data)


def _state_of(pk) -> str | None:
    request = ApprovalRequest.objects.filter(pk=pk).only("state", "expires_at").first()
    if request is None:
        return None
    if request.state == ApprovalState.PENDING and services.expire_if_due(request):
        return str(ApprovalState.EXPIRED)
    return request.state


class ApprovalRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, WardenViewSet):
    """The approval queue: requests of agents (held calls) and of people (four-eyes releases).
    Approvers and admins decide them; everyone may read (arguments masked)."""

    queryset = selectors.requests()
    serializer_class = ApprovalRequestSerializer
    filterset_fields = ["state", "kind", "environment", "tool"]
    ordering_fields = ["created_at", "expires_at"]
    action_roles = {"approve": DECIDER_ROLES, "deny": DECIDER_ROLES, "cancel": (*DECIDER_ROLES, Role.POLICY_AUTHOR)}

    def _decide(self, request, service):
        data = validated(DecisionSerializer, request)
        decided = _decided(lambda: service(self.get_object(), by=request.user, comment=data["comment"]))
        return Response(self.rendered(decided))

    @extend_schema(request=DecisionSerializer, responses={200: ApprovalRequestSerializer})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """Approve (one vote toward the quorum); never the agent's owner, principal or the release's author."""
        return self._decide(request, services.approve)

    @extend_schema(request=DecisionSerializer, responses={200: ApprovalRequestSerializer})
    @action(detail=True, methods=["post"])
    def deny(self, request, pk=None):
        """Deny, with a comment the agent receives."""
        return self._decide(request, services.deny)

    @extend_schema(request=DecisionSerializer, responses={200: ApprovalRequestSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Withdraw a pending request (its requester or an admin)."""
        return self._decide(request, services.cancel)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def history(self, request, pk=None):
        """The agent's latest audit events: what it did before asking."""
        return Response({"events": selectors.agent_history(self.get_object())})


class ApprovalRuleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                          mixins.UpdateModelMixin, mixins.DestroyModelMixin, WardenViewSet):
    """Who may approve what, the quorum and how long requests and grants hold (admins write)."""

    queryset = ApprovalRule.objects.all()
    serializer_class = ApprovalRuleSerializer


class WebhookEndpointViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, WardenViewSet):
    """Signed webhooks for approval events (Slack-compatible body); admins add them."""

    queryset = WebhookEndpoint.objects.all()
    serializer_class = WebhookEndpointSerializer

    def create(self, request):
        data = validated(WebhookEndpointSerializer, request)
        endpoint = notifications.create_endpoint(by=request.user, **data)
        return Response(self.rendered(endpoint), status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: WebhookDeliverySerializer(many=True)})
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        """The delivery log, newest first and paged: every event sent to this endpoint, its
        attempts and last error."""
        deliveries = self.get_object().deliveries.order_by("-created_at", "-pk")
        page = self.paginate_queryset(deliveries)
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)


class ReleaseGateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, WardenViewSet):
    """Four-eyes releases per environment: whether publishing or promoting to it waits for a
    second person (on by default for prod), and how many releases wait now. Admins change
    it; the waiting releases are in /approvals/?kind=release&state=pending."""

    queryset = Environment.objects.order_by("name")
    serializer_class = ReleaseGateSerializer
    lookup_field = "name"
    lookup_value_regex = r"[a-z][a-z0-9-]*"

    @extend_schema(request=ReleaseGateUpdateSerializer, responses={200: ReleaseGateSerializer})
    def update(self, request, name=None):
        """Turn the gate on or off (recorded in the change log)."""
        data = validated(ReleaseGateUpdateSerializer, request)
        environment = self.get_object()
        releases.set_four_eyes(environment, four_eyes=data["four_eyes"], by=request.user)
        return Response(self.rendered(environment))
