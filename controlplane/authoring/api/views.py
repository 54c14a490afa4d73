from datetime import timedelta

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.accounts.roles import Role
from controlplane.approvals.api.serializers import ApprovalRequestSerializer
from controlplane.approvals.models import ApprovalRequest
from controlplane.authoring import live, previews, services
from controlplane.authoring.api.serializers import (
    AuthoredRuleSerializer,
    AuthoredRuleWriteSerializer,
    DraftRequestSerializer,
    DraftSerializer,
    ImpactPreviewSerializer,
    LogOnlyEffectsSerializer,
    LogOnlySerializer,
    PreviewRequestSerializer,
    PublishPreviewSerializer,
    TemplateSerializer,
)
from controlplane.authoring.models import AuthoredRule, ImpactPreview
from controlplane.authoring.templates import TEMPLATES
from controlplane.bundles.api.serializers import BundleSerializer
from controlplane.bundles.models import Environment
from controlplane.core.api import validated
from controlplane.core.exceptions import InvalidInput
from controlplane.core.viewsets import WardenViewSet

AUTHORS = (Role.ADMIN, Role.POLICY_AUTHOR)


class TemplateViewSet(viewsets.ViewSet):
    """The catalog of rule templates, each with the JSON Schema of its parameters."""

    @extend_schema(responses={200: TemplateSerializer(many=True)})
    def list(self, request):
        return Response([
            {"key": t.key, "title": t.title, "description": t.description, "schema": t.schema} for t in TEMPLATES.values()
        ])


class AuthoredRuleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, WardenViewSet):
    """Rules authored from templates. Saving generates the module and its example tests
    (org/authoring/<name>.rego and _test.rego); every example must hold."""

    queryset = AuthoredRule.objects.select_related("module__current_revision", "test_module__current_revision")
    serializer_class = AuthoredRuleSerializer
    write_roles = AUTHORS
    action_roles = {"draft": AUTHORS, "log_only": AUTHORS}

    @extend_schema(request=AuthoredRuleWriteSerializer, responses={201: AuthoredRuleSerializer})
    def create(self, request):
        data = validated(AuthoredRuleWriteSerializer, request)
        if AuthoredRule.objects.filter(name=data["params"].get("name")).exists():
            return Response({"params.name": ["a rule with this name exists; PATCH it"]}, status=409)
        rule = services.save_authored_rule(by=request.user, **data)
        return Response(self.rendered(rule), status=status.HTTP_201_CREATED)

    @extend_schema(request=AuthoredRuleWriteSerializer, responses={200: AuthoredRuleSerializer})
    def partial_update(self, request, pk=None):
        rule = self.get_object()
        data = validated(AuthoredRuleWriteSerializer, request)
        if data["params"].get("name") != rule.name:
            raise InvalidInput("the name of a rule cannot change", field="params.name")
        rule = services.save_authored_rule(by=request.user, **data)
        return Response(self.rendered(rule))

    @extend_schema(request=DraftRequestSerializer, responses={200: DraftSerializer})
    @action(detail=False, methods=["post"])
    def draft(self, request):
        """The sentence, module, tests and test results for a template's answers; saves nothing."""
        return Response(services.draft(**validated(DraftRequestSerializer, request)))

    @extend_schema(request=LogOnlySerializer, responses={200: AuthoredRuleSerializer})
    @action(detail=True, methods=["post"], url_path="log-only")
    def log_only(self, request, pk=None):
        """Put the rule in log-only mode, or enforce it (log_only false): one new revision."""
        rule = self.get_object()
        data = validated(LogOnlySerializer, request)
        if rule.module is None:
            raise InvalidInput("the rule has no module", field="log_only")
        services.set_log_only(rule.module, by=request.user, **data)
        return Response(self.rendered(rule))


class ImpactPreviewViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, WardenViewSet):
    """Impact previews: the current policies replayed against an environment's recorded
    traffic before publishing. Runs as a Celery task; poll `progress`."""

    queryset = ImpactPreview.objects.select_related("environment", "requested_by", "second_person", "bundle")
    serializer_class = ImpactPreviewSerializer
    write_roles = AUTHORS
    action_roles = {"release": AUTHORS, "publish": AUTHORS}
    filterset_fields = ["status"]

    @extend_schema(request=PreviewRequestSerializer, responses={202: ImpactPreviewSerializer})
    def create(self, request):
        data = validated(PreviewRequestSerializer, request)
        environment = get_object_or_404(Environment, name=data.pop("environment"))
        preview = previews.request_impact_preview(environment, by=request.user, **data)
        return Response(self.rendered(preview), status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={200: ImpactPreviewSerializer})
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None):
        """A second person releases the preview's relaxations (four-eyes)."""
        return Response(self.rendered(previews.release_relaxations(self.get_object(), by=request.user)))

    @extend_schema(request=PublishPreviewSerializer, responses={200: BundleSerializer, 202: ApprovalRequestSerializer})
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        """Publish the previewed policies to the preview's environment."""
        data = validated(PublishPreviewSerializer, request)
        published = previews.publish_previewed(self.get_object(), by=request.user, **data)
        if isinstance(published, ApprovalRequest):
            return Response(ApprovalRequestSerializer(published, context={"request": request}).data, status=202)
        return Response(BundleSerializer(published).data)

    @extend_schema(
        parameters=[OpenApiParameter("environment", str, required=True), OpenApiParameter("hours", int)],
        responses={200: LogOnlyEffectsSerializer},
    )
    @action(detail=False, methods=["get"], url_path="log-only-effects")
    def log_only_effects(self, request):
        """What log-only rules would have decided on live traffic (from decision logs)."""
        environment = get_object_or_404(Environment, name=request.query_params.get("environment", ""))
        try:
            hours = int(request.query_params.get("hours", "24"))
        except ValueError:
            raise InvalidInput("hours must be a whole number", field="hours") from None
        if not 1 <= hours <= 24 * 92:
            raise InvalidInput("hours must be from 1 to 2208", field="hours")
        return Response(live.log_only_effects(environment, since=timezone.now() - timedelta(hours=hours)))
