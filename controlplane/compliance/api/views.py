import base64
import binascii
import json

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.accounts.roles import Role
from controlplane.bundles.models import Environment
from controlplane.compliance import attestations, oscal, package, scoping, selectors, services
from controlplane.compliance.api.filters import AttestationFilter, GapReportFilter
from controlplane.compliance.api.serializers import (
    AgentClassificationSerializer,
    AttestationRequestSerializer,
    AttestationSerializer,
    ComplianceScopeSerializer,
    ControlOwnerRequestSerializer,
    ControlOwnerSerializer,
    FrameworkSerializer,
    GapReportDetailSerializer,
    GapReportRequestSerializer,
    GapReportSerializer,
    MappingSerializer,
    SignatureSerializer,
    SignOffRequestSerializer,
    SignOffSerializer,
)
from controlplane.compliance.models import AgentClassification, Attestation, ComplianceScope, ControlOwner
from controlplane.identity.models import Agent
from controlplane.compliance.catalog import FRAMEWORK_IDS, load_catalogs
from controlplane.core.api import validated
from controlplane.core.exceptions import InvalidInput

# Reports read the platform and change nothing in it, so auditors may ask for one as well
# as administrators; the request itself lands in the change log.
REPORT_REQUESTERS = (Role.ADMIN, Role.AUDITOR)
# Preparer, reviewer and approver of a report: an internal auditor may review one.
SIGNERS = (Role.ADMIN, Role.APPROVER, Role.AUDITOR)


class PDFRenderer(BaseRenderer):
    """Lets `Accept: application/pdf` reach the PDF action (DRF answers 406 otherwise);
    errors on that route are still JSON (see GapReportViewSet.handle_exception)."""

    media_type = "application/pdf"
    format = "pdf"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else json.dumps(data).encode()


class ZipRenderer(PDFRenderer):
    media_type = "application/zip"
    format = "zip"


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
            assess_as_of=data.get("assess_as_of"), categories=data.get("categories"),
        )
        report.refresh_from_db()  # eager Celery (embedded mode) has built it already
        return Response(GapReportSerializer(report).data, status=status.HTTP_202_ACCEPTED)

    def handle_exception(self, exc):
        # An error on the PDF or package route is JSON, even when the client accepts only the file.
        response = super().handle_exception(exc)
        if isinstance(getattr(self.request, "accepted_renderer", None), PDFRenderer):
            self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), "application/json"
        return response

    def _filename(self, report, suffix: str) -> str:
        return f"warden-{report.framework}-{report.environment.name}-{report.created_at:%Y%m%d}{suffix}"

    @extend_schema(responses={(200, "application/pdf"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, PDFRenderer])
    def pdf(self, request, pk=None):
        """The report as PDF (409 until the report is done). Its SHA-256 is `pdf_sha256` on the
        report; its detached signature is at …/signature/."""
        report = get_object_or_404(selectors.reports().defer(None), pk=pk)
        content = services.report_pdf(report)
        response = HttpResponse(content, content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{self._filename(report, ".pdf")}"'
        response["X-Content-SHA256"] = report.pdf_sha256
        return response

    @extend_schema(responses={200: SignatureSerializer})
    @action(detail=True, methods=["get"])
    def signature(self, request, pk=None):
        """The PDF's detached signature (Warden's checkpoint key, Ed25519): verify offline with
        `warden report verify REPORT.pdf --signature SIG.json --public-key KEY`."""
        report = get_object_or_404(selectors.reports().defer(None), pk=pk)
        services.report_pdf(report)  # renders and signs it if a sign-off dropped the stored one
        return Response(report.pdf_signature)

    @extend_schema(
        parameters=[OpenApiParameter("seed", int, description="sample seed (default: fixed per report)"),
                    OpenApiParameter("sample_size", int, description="objects sampled per evidence kind (1-1000, "
                                     "default 25)")],
        responses={(200, "application/zip"): OpenApiTypes.BINARY},
    )
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, ZipRenderer])
    def package(self, request, pk=None):
        """The evidence package: report JSON, PDF and signature, population listings with a
        seeded sample per evidence kind, and a signed manifest of every file's SHA-256."""
        report = get_object_or_404(selectors.reports().defer(None), pk=pk)
        seed = _int_param(request, "seed")
        size = _int_param(request, "sample_size")
        pdf = services.report_pdf(report)
        content = package.build_package(report, pdf, seed=seed,
                                        sample_size=package.DEFAULT_SAMPLE_SIZE if size is None else size)
        response = HttpResponse(content, content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{self._filename(report, "-evidence.zip")}"'
        return response

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def oscal(self, request, pk=None):
        """The finished report as an OSCAL 1.1.2 Assessment Results document (JSON): one finding
        per assessed control, one observation per evidence item; only "met" is satisfied."""
        report = get_object_or_404(selectors.reports(), pk=pk)
        response = Response(oscal.assessment_results(report))
        response["Content-Disposition"] = f'attachment; filename="{self._filename(report, "-oscal-ar.json")}"'
        return response

    @extend_schema(request=SignOffRequestSerializer, responses={201: SignOffSerializer})
    @action(detail=True, methods=["post"], url_path="sign-off")
    def sign_off(self, request, pk=None):
        """Sign the report off as preparer, then reviewer, then approver (three people)."""
        report = get_object_or_404(selectors.reports(), pk=pk)
        data = validated(SignOffRequestSerializer, request)
        signed = attestations.sign_off(report, role=data["role"], by=request.user, comment=data.get("comment", ""))
        return Response(SignOffSerializer(signed).data, status=status.HTTP_201_CREATED)

    action_roles = {"sign_off": SIGNERS}


def _int_param(request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput("must be a whole number", field=name) from None


class ComplianceScopeView(APIView):
    """The scope an environment's reports assume (EU role, SOC 2 categories, HIPAA status,
    what is out of scope). PUT replaces the given fields."""

    write_roles = (Role.ADMIN,)

    def _environment(self, name):
        return get_object_or_404(Environment.objects.all(), name=name)

    @extend_schema(responses={200: ComplianceScopeSerializer})
    def get(self, request, environment):
        env = self._environment(environment)
        scope = ComplianceScope.objects.filter(environment=env).first() or ComplianceScope(environment=env)
        return Response(ComplianceScopeSerializer(scope).data)

    @extend_schema(request=ComplianceScopeSerializer, responses={200: ComplianceScopeSerializer})
    def put(self, request, environment):
        env = self._environment(environment)
        data = validated(ComplianceScopeSerializer, request, partial=True)
        scope = scoping.update_scope(env, by=request.user, **data)
        return Response(ComplianceScopeSerializer(scope).data)


class AgentClassificationView(APIView):
    """An agent's EU AI Act classification as a person assessed it (status, rationale, route,
    Art. 50 triggers), the models it uses and whether it handles ePHI."""

    write_roles = (Role.ADMIN,)

    @extend_schema(responses={200: AgentClassificationSerializer})
    def get(self, request, agent):
        found = get_object_or_404(Agent.objects.all(), name=agent)
        classification = AgentClassification.objects.filter(agent=found).first() or AgentClassification(agent=found)
        return Response(AgentClassificationSerializer(classification).data)

    @extend_schema(request=AgentClassificationSerializer, responses={200: AgentClassificationSerializer})
    def put(self, request, agent):
        found = get_object_or_404(Agent.objects.all(), name=agent)
        data = validated(AgentClassificationSerializer, request, partial=True)
        classification = scoping.classify_agent(found, by=request.user, **data)
        return Response(AgentClassificationSerializer(classification).data)


class AttestationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Attestations (a control operates) and exceptions (a gap is accepted, approved by a
    second person). Both cover a control in an environment for a period and expire."""

    serializer_class = AttestationSerializer
    filterset_class = AttestationFilter
    write_roles = (Role.ADMIN,)
    action_roles = {"approve": (Role.ADMIN, Role.APPROVER)}

    def get_queryset(self):
        return Attestation.objects.select_related("environment", "owner", "created_by", "approved_by") \
            .defer("document").order_by("-created_at")

    @extend_schema(request=AttestationRequestSerializer, responses={201: AttestationSerializer})
    def create(self, request):
        data = validated(AttestationRequestSerializer, request)
        document = None
        if data.get("document_base64"):
            try:
                document = base64.b64decode(data["document_base64"], validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput("must be base64", field="document_base64") from None
        item = attestations.record_attestation(
            kind=data["kind"], framework=data["framework"], control_id=data["control_id"],
            environment=data["environment"], period_start=data["period_start"], period_end=data["period_end"],
            statement=data["statement"], owner=attestations.user_named(data["owner"], "owner"), by=request.user,
            expires_at=data["expires_at"], document=document, document_name=data.get("document_name", ""),
            reason=data.get("reason", ""), compensating_measure=data.get("compensating_measure", ""),
        )
        return Response(AttestationSerializer(item).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: AttestationSerializer})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """Approve an exception (risk acceptance); the approver is not its requester or owner."""
        item = attestations.approve_exception(self.get_object(), by=request.user)
        return Response(AttestationSerializer(item).data)

    @extend_schema(request=None, responses={200: AttestationSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        item = attestations.revoke_attestation(self.get_object(), by=request.user)
        return Response(AttestationSerializer(item).data)

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"])
    def document(self, request, pk=None):
        """The attached document, byte for byte (its SHA-256 is on the attestation)."""
        item = get_object_or_404(Attestation.objects.all(), pk=pk)
        if not item.document_sha256:
            raise NotFound("this attestation has no document")
        response = HttpResponse(bytes(item.document), content_type="application/octet-stream")
        response["Content-Disposition"] = "attachment; filename=\"attestation-document\""
        response["X-Content-SHA256"] = item.document_sha256
        return response


class ControlOwnerViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Who owns each control in an environment and how often it is reviewed. POST sets (or
    replaces) a control's owner."""

    serializer_class = ControlOwnerSerializer
    write_roles = (Role.ADMIN,)

    def get_queryset(self):
        queryset = ControlOwner.objects.select_related("environment", "owner").order_by("framework", "control_id")
        for name, lookup in (("framework", "framework"), ("environment", "environment__name")):
            value = self.request.query_params.get(name)
            if value:
                queryset = queryset.filter(**{lookup: value})
        return queryset

    @extend_schema(request=ControlOwnerRequestSerializer, responses={200: ControlOwnerSerializer})
    def create(self, request):
        data = validated(ControlOwnerRequestSerializer, request)
        row = attestations.set_control_owner(
            framework=data["framework"], control_id=data["control_id"], environment=data["environment"],
            owner=attestations.user_named(data["owner"], "owner"), by=request.user,
            review_every_days=data.get("review_every_days", 90),
        )
        return Response(ControlOwnerSerializer(row).data)
