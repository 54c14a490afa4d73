from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.accounts.roles import Role
from controlplane.bundles.models import Environment
from controlplane.compliance import selectors, services
from controlplane.compliance.api.filters import GapReportFilter
from controlplane.compliance.api.serializers import (
    FrameworkSerializer,
    GapReportDetailSerializer,
    GapReportRequestSerializer,
    GapReportSerializer,
    MappingSerializer,
)
from controlplane.compliance.catalog import FRAMEWORK_IDS, load_catalogs
from controlplane.core.api import validated
from controlplane.core.exceptions import InvalidInput

# Reports read the platform and change nothing in it, so auditors may ask for one as well
# as administrators; the request itself lands in the change log.
REPORT_REQUESTERS = (Role.ADMIN, Role.AUDITOR)


class FrameworkViewSet(viewsets.ViewSet):
    """The control catalogs: every control with its requirement (Warden's own words),
    applicability and the evidence kinds that support it."""

    lookup_value_regex = "|".join(FRAMEWORK_IDS)

    @extend_schema(responses={200: FrameworkSerializer(many=True)})
    def list(self, request):
        return Response(FrameworkSerializer(list(load_catalogs().values()), many=True).data)

    @extend_schema(responses={200: FrameworkSerializer})
    def retrieve(self, request, pk=None):
        return Response(FrameworkSerializer(load_catalogs()[pk]).data)


class MappingView(APIView):
    """For each control, the rules (METADATA `custom.controls`) and evidence kinds that
    serve it; for each rule, the controls it serves; and the controls no rule serves."""

    @extend_schema(
        parameters=[
            OpenApiParameter("framework", str, enum=list(FRAMEWORK_IDS), description="one framework (default: all)"),
            OpenApiParameter("environment", str, description="rules of this environment's active bundle "
                             "(default: the current policies)"),
        ],
        responses={200: MappingSerializer},
    )
    def get(self, request):
        framework_id = request.query_params.get("framework") or None
        if framework_id is not None and framework_id not in FRAMEWORK_IDS:
            raise InvalidInput(f"choose one of {', '.join(FRAMEWORK_IDS)}", field="framework")
        environment = None
        name = request.query_params.get("environment")
        if name:
            environment = Environment.objects.select_related("active_bundle").filter(name=name).first()
            if environment is None:
                raise InvalidInput(f"no environment named {name!r}", field="environment")
        mapping = selectors.control_mapping(framework_id=framework_id, environment=environment)
        return Response(MappingSerializer(mapping).data)


class GapReportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Gap reports per framework and environment. POST asks for one (202; it is built by a
    worker — poll `status` and `progress`), GET …/pdf/ downloads a finished one."""

    queryset = selectors.reports()
    serializer_class = GapReportSerializer
    filterset_class = GapReportFilter
    ordering_fields = ["created_at", "score"]
    ordering = ["-created_at"]
    write_roles = REPORT_REQUESTERS

    def get_queryset(self):
        return selectors.report_detail() if self.action == "retrieve" else selectors.reports()

    def get_serializer_class(self):
        return GapReportDetailSerializer if self.action == "retrieve" else GapReportSerializer

    @extend_schema(request=GapReportRequestSerializer, responses={202: GapReportSerializer})
    def create(self, request):
        data = validated(GapReportRequestSerializer, request)
        report = services.request_gap_report(
            framework=data["framework"], environment=data["environment"], by=request.user,
            period_start=data.get("period_start"), period_end=data.get("period_end"),
        )
        report.refresh_from_db()  # eager Celery (embedded mode) has built it already
        return Response(GapReportSerializer(report).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={(200, "application/pdf"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"])
    def pdf(self, request, pk=None):
        """The report as PDF (409 until the report is done)."""
        report = get_object_or_404(selectors.reports().defer(None), pk=pk)
        content = services.report_pdf(report)
        response = HttpResponse(content, content_type="application/pdf")
        response["Content-Disposition"] = (
            f'attachment; filename="warden-{report.framework}-{report.environment.name}-'
            f'{report.created_at:%Y%m%d}.pdf"'
        )
        return response
