from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.accounts.roles import Role
from controlplane.core.api import validated
from controlplane.core.exceptions import InvalidInput
from controlplane.detection import selectors
from controlplane.detection.api.filters import AlertFilter, IncidentFilter
from controlplane.detection.api.serializers import (
    AlertDetailSerializer,
    AlertNoteSerializer,
    AlertSerializer,
    BaselineSerializer,
    ClockMetSerializer,
    InboxSerializer,
    IncidentActionSerializer,
    IncidentClockSerializer,
    IncidentCreateSerializer,
    IncidentDetailSerializer,
    IncidentEntrySerializer,
    IncidentFromAlertSerializer,
    IncidentSerializer,
    IncidentStatusSerializer,
    IncidentUpdateSerializer,
    LinkAlertSerializer,
    LinkSessionSerializer,
    ResponsePolicySerializer,
)
from controlplane.detection.models import ResponsePolicy
from controlplane.detection.services import alerts, incidents, response

# Triage is the on-call's job: approvers (who may pull the kill switch) and admins.
RESPONDERS = (Role.ADMIN, Role.APPROVER)


class AlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Anomaly alerts: what broke an agent's baseline, with the numbers and the evidence.
    Raised by the detector only; people acknowledge, resolve or mark them false positives
    (which teaches the baseline)."""

    queryset = selectors.alerts()
    serializer_class = AlertSerializer
    filterset_class = AlertFilter
    search_fields = ["summary", "subject", "agent__name"]
    ordering_fields = ["raised_at", "severity", "last_seen_at", "id"]
    ordering = ["-raised_at", "-id"]
    write_roles = RESPONDERS

    def get_serializer_class(self):
        return AlertDetailSerializer if self.action == "retrieve" else AlertSerializer

    @extend_schema(request=AlertNoteSerializer, responses={200: AlertSerializer})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        """Someone is looking at it (open → acknowledged)."""
        return self._transition(request, alerts.acknowledge_alert)

    @extend_schema(request=AlertNoteSerializer, responses={200: AlertSerializer})
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        """It was real and has been dealt with."""
        return self._transition(request, alerts.resolve_alert)

    @extend_schema(request=AlertNoteSerializer, responses={200: AlertSerializer})
    @action(detail=True, methods=["post"], url_path="false-positive")
    def false_positive(self, request, pk=None):
        """It was legitimate: the agent's baseline learns that this behaviour is normal."""
        return self._transition(request, alerts.mark_false_positive)

    @extend_schema(request=IncidentFromAlertSerializer, responses={201: IncidentDetailSerializer})
    @action(detail=True, methods=["post"])
    def incident(self, request, pk=None):
        """Open an incident from this alert (or return the open one that already holds it)."""
        data = validated(IncidentFromAlertSerializer, request)
        incident = incidents.open_incident_from_alert(self.get_object(), by=request.user, **data)
        return Response(IncidentDetailSerializer(selectors.incidents().get(pk=incident.pk)).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: InboxSerializer})
    @action(detail=False, methods=["get"])
    def inbox(self, request):
        """The console inbox's counts: open and acknowledged alerts, by severity."""
        return Response(InboxSerializer(selectors.inbox()).data)

    def _transition(self, request, service):
        data = validated(AlertNoteSerializer, request)
        alert = service(self.get_object(), by=request.user, **data)
        return Response(AlertSerializer(selectors.alerts().get(pk=alert.pk)).data)


class IncidentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Incidents: owner, severity, SOC 2 triage state, a timeline of alerts, sessions and
    actions, and the regulatory clocks (EU AI Act Art. 73, HIPAA 164.404/164.410)."""

    queryset = selectors.incidents()
    serializer_class = IncidentSerializer
    filterset_class = IncidentFilter
    search_fields = ["title", "description"]
    ordering_fields = ["opened_at", "aware_at", "severity", "id"]
    ordering = ["-opened_at", "-id"]
    write_roles = RESPONDERS

    def get_serializer_class(self):
        return IncidentDetailSerializer if self.action == "retrieve" else IncidentSerializer

    def _render(self, incident, code=status.HTTP_200_OK):
        return Response(IncidentDetailSerializer(selectors.incidents().get(pk=incident.pk)).data, status=code)

    @extend_schema(request=IncidentCreateSerializer, responses={201: IncidentDetailSerializer})
    def create(self, request):
        data = validated(IncidentCreateSerializer, request)
        return self._render(incidents.open_incident(by=request.user, **data), status.HTTP_201_CREATED)

    @extend_schema(request=IncidentUpdateSerializer, responses={200: IncidentDetailSerializer})
    def partial_update(self, request, pk=None):
        data = validated(IncidentUpdateSerializer, request, partial=True)
        return self._render(incidents.update_incident(self.get_object(), by=request.user, **data))

    @extend_schema(request=IncidentStatusSerializer, responses={200: IncidentDetailSerializer})
    @action(detail=True, methods=["post"], url_path="status")
    def set_status(self, request, pk=None):
        """Move through triage (CC7.3), containment and remediation (CC7.4), recovery (CC7.5), closed."""
        data = validated(IncidentStatusSerializer, request)
        return self._render(incidents.set_incident_status(self.get_object(), by=request.user, **data))

    @extend_schema(request=LinkAlertSerializer, responses={200: IncidentDetailSerializer})
    @action(detail=True, methods=["post"], url_path="alerts")
    def link_alert(self, request, pk=None):
        data = validated(LinkAlertSerializer, request)
        return self._render(incidents.link_alert(self.get_object(), data["alert"], by=request.user))

    @extend_schema(request=LinkSessionSerializer, responses={201: IncidentEntrySerializer})
    @action(detail=True, methods=["post"], url_path="sessions")
    def link_session(self, request, pk=None):
        data = validated(LinkSessionSerializer, request)
        entry = incidents.link_session(self.get_object(), by=request.user, **data)
        return Response(IncidentEntrySerializer(entry).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=IncidentActionSerializer, responses={201: IncidentEntrySerializer})
    @action(detail=True, methods=["post"], url_path="actions")
    def record_action(self, request, pk=None):
        """Write down an action taken: containment, notification, remediation."""
        data = validated(IncidentActionSerializer, request)
        entry = incidents.record_action(self.get_object(), by=request.user, **data)
        return Response(IncidentEntrySerializer(entry).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ClockMetSerializer, responses={200: IncidentClockSerializer})
    @action(detail=True, methods=["post"], url_path="clock-met")
    def clock_met(self, request, pk=None):
        """The report or notice a clock asks for went out."""
        data = validated(ClockMetSerializer, request)
        clock = incidents.mark_clock_met(self.get_object(), by=request.user, **data)
        return Response(IncidentClockSerializer(clock).data)


class ResponsePolicyViewSet(viewsets.ModelViewSet):
    """Automatic response, opt-in per environment: on an alert of at least `min_severity`,
    suspend agents of the listed risk tiers through the kill switch (`action: suspend`) or
    hold every action of theirs for approval until the alert is closed
    (`action: require_approval`), as `warden-detector`."""

    queryset = ResponsePolicy.objects.all()
    serializer_class = ResponsePolicySerializer
    lookup_field = "environment"
    lookup_value_regex = r"[a-z0-9_-]+"
    ordering_fields = ["environment"]
    http_method_names = ["get", "post", "put", "delete", "head", "options"]

    @extend_schema(request=ResponsePolicySerializer, responses={201: ResponsePolicySerializer})
    def create(self, request):
        data = validated(ResponsePolicySerializer, request)
        policy = response.set_response_policy(by=request.user, **data)
        return Response(ResponsePolicySerializer(policy).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ResponsePolicySerializer, responses={200: ResponsePolicySerializer})
    def update(self, request, environment=None):
        self.get_object()
        data = validated(ResponsePolicySerializer, request)
        if data["environment"] != environment:
            raise InvalidInput("must match the environment in the URL", field="environment")
        policy = response.set_response_policy(by=request.user, **data)
        return Response(ResponsePolicySerializer(policy).data)

    def destroy(self, request, environment=None):
        response.delete_response_policy(self.get_object(), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BaselineViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """What detection has learned is normal for each agent."""

    queryset = selectors.baselines()
    serializer_class = BaselineSerializer
    lookup_field = "agent__name"
    lookup_url_kwarg = "agent"
    lookup_value_regex = r"[a-z0-9_-]+"
    ordering_fields = ["updated_at", "events"]
    ordering = ["agent__name"]
