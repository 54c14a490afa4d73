from rest_framework import viewsets
from rest_framework.exceptions import NotFound

from controlplane.opa import selectors
from controlplane.opa.api.filters import DecisionLogFilter, OPAInstanceFilter
from controlplane.opa.api.serializers import DecisionLogSerializer, OPAInstanceSerializer


class OPAInstanceViewSet(viewsets.ReadOnlyModelViewSet):
    """OPA instances by their status reports: which instance runs which revision, whether
    that is the environment's active revision, and which have gone quiet. Read-only: OPA
    writes these through /opa/status."""

    serializer_class = OPAInstanceSerializer
    filterset_class = OPAInstanceFilter
    search_fields = ["instance_id", "active_revision", "version"]
    ordering_fields = ["last_seen", "first_seen", "instance_id", "version"]

    def get_queryset(self):
        return selectors.opa_instances()


class DecisionLogViewSet(viewsets.ReadOnlyModelViewSet):
    """Decisions uploaded by OPA instances (OPA's decision logs), newest first. Read-only:
    OPA writes these through /opa/logs."""

    serializer_class = DecisionLogSerializer
    filterset_class = DecisionLogFilter
    lookup_field = "decision_id"
    lookup_value_regex = r"[^/]+"
    search_fields = ["decision_id", "path"]
    ordering_fields = ["timestamp", "received_at"]

    def get_queryset(self):
        return selectors.decision_logs()

    def get_object(self):
        # A decision id is unique per environment and OPA instance, not globally: the newest
        # match, narrowed by the list filters (?environment=, ?instance_id=) when given.
        found = (
            self.filter_queryset(self.get_queryset()).filter(decision_id=self.kwargs["decision_id"])
            .order_by("-received_at", "-id").first()
        )
        if found is None:
            raise NotFound("no decision log with this decision_id")
        return found
