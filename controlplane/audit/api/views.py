from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.filters import SearchFilter
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from controlplane.accounts.roles import Role
from controlplane.audit import checkpoints, conf, exports, ingestion, integrity, retention, selectors
from controlplane.audit.api.filters import (
    AuditEventFilter,
    BatchFilter,
    EventOrdering,
    QuarantineFilter,
    rule_row_ordering,
)
from controlplane.audit.api.pagination import CappedCountPagination
from controlplane.audit.api.serializers import (
    AuditEventSerializer,
    BatchAcceptedSerializer,
    BatchSerializer,
    CheckpointHeadSerializer,
    CheckpointKeySerializer,
    CheckpointSerializer,
    QuarantinedRecordSerializer,
    RetentionPolicySerializer,
    RetentionPolicyWriteSerializer,
    TimelineSerializer,
    VerificationReportSerializer,
)
from controlplane.audit.authentication import (
    AgentSignatureAuthentication,
    IsUsableAgent,
    PayloadTooLarge,
    read_body,
)
from controlplane.audit.models import CheckpointKey, RetentionPolicy
from controlplane.audit.records import BatchTooLarge
from controlplane.core.api import validated
from controlplane.core.exceptions import InvalidInput
from controlplane.identity.models import Agent

EXPORT_ROLES = (Role.ADMIN, Role.AUDITOR)


class BatchViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Batches of signed records. Agents POST them, signed with their own key (see
    docs/audit.md); people read their verification status and counts."""

    queryset = selectors.batches()
    serializer_class = BatchSerializer
    filterset_class = BatchFilter
    ordering_fields = ["id", "received_at"]

    # Uploads come from agents, not users: their own signature, not a token or a role.
    def _is_upload(self) -> bool:
        request = getattr(self, "request", None)
        if request is None:  # schema generation has no request, only the action
            return getattr(self, "action", None) == "create"
        return request.method == "POST"

    def get_authenticators(self):
        if self._is_upload():
            return [AgentSignatureAuthentication()]
        return super().get_authenticators()

    def get_permissions(self):
        if self._is_upload():
            return [IsUsableAgent()]
        return super().get_permissions()

    @extend_schema(
        request={"application/json": OpenApiTypes.OBJECT},
        responses={202: BatchAcceptedSerializer},
        parameters=[
            OpenApiParameter(name, str, OpenApiParameter.HEADER, required=True)
            for name in ("X-Warden-Agent", "X-Warden-Key-Id", "X-Warden-Timestamp", "X-Warden-Signature")
        ],
    )
    def create(self, request):
        """Store a batch `{"records": [...]}` durably; it is verified asynchronously."""
        try:
            batch = ingestion.ingest_batch(
                agent=request.user.agent, key_id=request.auth.key_id,
                body=read_body(request, conf.max_batch_bytes()),
                content_encoding=request.META.get("HTTP_CONTENT_ENCODING", ""),
            )
        except BatchTooLarge as exc:
            raise PayloadTooLarge(str(exc)) from exc
        return Response({"batch_id": batch.pk, "accepted": batch.record_count}, status=status.HTTP_202_ACCEPTED)


class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Verified events: every record here had a valid signature with the key valid at its
    time and continued its session's chain. Payloads are masked."""

    queryset = selectors.events()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    filter_backends = [DjangoFilterBackend, SearchFilter, EventOrdering]
    pagination_class = CappedCountPagination
    ordering_fields = ["id", "time", "seq"]
    ordering = ["id"]
    action_roles = {"export": EXPORT_ROLES}

    def checkpointed_upto(self) -> int:
        if not hasattr(self, "_checkpointed_upto"):
            self._checkpointed_upto = selectors.checkpointed_upto()
        return self._checkpointed_upto

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "checkpointed_upto": self.checkpointed_upto()}

    def _rule_rows(self, queryset):
        """A rule search's matches as rule rows, where they say the same as the events
        (AuditEventFilter.rule_rows_to_count), else None. Made once per request."""
        if not hasattr(self, "_rule_rows_found"):
            filterset = self.filterset_class(self.request.query_params, queryset=queryset, request=self.request)
            self._rule_rows_found = filterset.rule_rows_to_count()
        return self._rule_rows_found

    def count_queryset(self, queryset):
        """What the page's capped count counts (CappedCountPagination): a rule search's rule
        rows alone where they say the same."""
        rows = self._rule_rows(queryset)
        return queryset if rows is None else rows

    def page_of(self, queryset, offset: int, limit: int):
        """A rule search's page (CappedCountPagination) in two steps where the rule rows say
        the same and the order is by time and id: the page's keys from the rule table alone,
        then those events by key. Joined in one query, the planner fetched every match of a
        rare rule to sort them (hundreds of events for a page of 50: p99 485 ms at 100 M
        events, docs/scale.md). None otherwise: the page of `queryset`."""
        rows = self._rule_rows(queryset)
        if rows is None:
            return None
        order = rule_row_ordering(EventOrdering().requested(self.request, queryset, self))
        if order is None:
            return None
        keys = list(rows.order_by(*order).values_list("event_id", "time")[offset : offset + limit])
        return selectors.events_by_keys(self.get_queryset(), keys)

    @extend_schema(
        parameters=[OpenApiParameter(
            "originals", bool, description="the records exactly as signed, unmasked (roles in "
            "WARDEN_AUDIT_ORIGINALS_ROLES only); otherwise payloads are masked as stored",
        )],
        responses={(200, "application/jsonl"): OpenApiTypes.STR},
    )
    @action(detail=False, methods=["get"])
    def export(self, request):
        """The records (JSONL) of every session with an event matching the filters, whole and
        in chain order, masked as stored unless `originals=true` (then `warden audit verify`
        checks the file offline). Every export is recorded."""
        originals = request.query_params.get("originals", "").lower() in ("1", "true", "yes")
        if originals and (refusal := exports.originals_refusal(request.user)):
            raise PermissionDenied(refusal)
        lines = exports.start_export(
            user=request.user, filtered=self.filter_queryset(self.get_queryset()),
            query=request.META.get("QUERY_STRING", ""), originals=originals,
        )
        response = StreamingHttpResponse(lines, content_type="application/jsonl")
        response["Content-Disposition"] = 'attachment; filename="warden-audit.jsonl"'
        return response


class QuarantineViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Records that failed verification, with the reason; never part of the events."""

    queryset = selectors.quarantined()
    serializer_class = QuarantinedRecordSerializer
    filterset_class = QuarantineFilter
    ordering_fields = ["id", "quarantined_at"]
    ordering = ["id"]


class TimelineView(APIView):
    """A session's full timeline: verified events in chain order, quarantined records and
    the OPA decision logs of the same agent and session, by time."""

    @extend_schema(
        parameters=[
            OpenApiParameter("agent", str, required=True, description="agent name"),
            OpenApiParameter("session", str, required=True, description="session id"),
        ],
        responses={200: TimelineSerializer},
    )
    def get(self, request):
        agent = request.query_params.get("agent", "")
        session = request.query_params.get("session", "")
        if not agent:
            raise InvalidInput("name the agent: ?agent=<name>", field="agent")
        if not session:
            raise InvalidInput("name the session: ?session=<session id>", field="session")
        get_object_or_404(Agent, name=agent)
        entries = selectors.session_timeline(agent_name=agent, session_id=session)
        return Response({"agent": agent, "session": session, "count": len(entries), "entries": entries})


class CheckpointViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Signed checkpoints over the stored log (Merkle roots), oldest first."""

    queryset = selectors.checkpoints()
    serializer_class = CheckpointSerializer
    filterset_fields = ["kind"]
    ordering = ["sequence"]

    @extend_schema(responses={200: CheckpointKeySerializer(many=True)})
    @action(detail=False, methods=["get"], url_path="keys", pagination_class=None)
    def keys(self, request):
        """The control plane's public keys that sign checkpoints (the active one created on first use)."""
        checkpoints.active_checkpoint_key()
        keys = CheckpointKey.objects.order_by("-created_at")
        return Response(CheckpointKeySerializer(keys, many=True).data)


class VerifyView(APIView):
    """Check the stored log against the signed checkpoints (with the pinned keys) and the
    witness; names every event changed, removed, inserted or moved, and a cut tail."""

    @extend_schema(responses={200: VerificationReportSerializer})
    def get(self, request):
        return Response(integrity.verify_log().as_dict())


class CheckpointHeadView(APIView):
    """The latest signed checkpoint head, for anyone: engines and outsiders keep it to detect
    a log cut short or rolled back (it must never go backwards)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: CheckpointHeadSerializer, 404: None}, auth=[])
    def get(self, request):
        head = selectors.latest_checkpoint_head()
        if head is None:
            raise NotFound("no checkpoint has been signed yet")
        return Response(head)


class RetentionPolicyViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """How long events are kept, per environment or per agent (days)."""

    queryset = RetentionPolicy.objects.select_related("agent")
    serializer_class = RetentionPolicySerializer

    @extend_schema(request=RetentionPolicyWriteSerializer, responses={200: RetentionPolicySerializer})
    def create(self, request):
        data = validated(RetentionPolicyWriteSerializer, request)
        agent = get_object_or_404(Agent, name=data["agent"]) if data["agent"] else None
        policy = retention.set_retention_policy(
            days=data["days"], environment=data["environment"], agent=agent, by=request.user
        )
        return Response(RetentionPolicySerializer(policy).data, status=status.HTTP_200_OK)

    def destroy(self, request, pk=None):
        retention.delete_retention_policy(self.get_object(), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
