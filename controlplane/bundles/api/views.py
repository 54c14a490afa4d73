from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.accounts.roles import Role
from controlplane.approvals.api.serializers import ApprovalRequestSerializer
from controlplane.approvals.models import ApprovalRequest
from controlplane.approvals.releases import held_release
from controlplane.authoring.previews import publish_with_preview_or_override
from controlplane.bundles import services
from controlplane.bundles.api.serializers import (
    ActivationSerializer,
    BundleSerializer,
    EnvironmentSerializer,
    EnvironmentTokenCreatedSerializer,
    EnvironmentTokenCreateSerializer,
    EnvironmentTokenSerializer,
    EnvironmentUpdateSerializer,
    PromoteSerializer,
    PublishSerializer,
    RollbackSerializer,
    SigningKeySerializer,
)
from controlplane.bundles.models import Bundle, Environment, EnvironmentToken, SigningKey
from controlplane.core.api import validated
from controlplane.core.viewsets import WardenViewSet

RELEASERS = (Role.ADMIN, Role.POLICY_AUTHOR)


class EnvironmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, WardenViewSet):
    """Environments (dev, staging, prod), each serving one active signed bundle.
    Publish, promote and roll back are one call each and land in the change log."""

    queryset = Environment.objects.select_related("active_bundle")
    serializer_class = EnvironmentSerializer
    lookup_field = "name"
    lookup_value_regex = r"[a-z][a-z0-9-]*"
    action_roles = {"publish": RELEASERS, "promote": RELEASERS, "rollback": RELEASERS}
    search_fields = ["name", "description"]
    ordering_fields = ["position", "name"]

    def create(self, request):
        data = validated(EnvironmentSerializer, request)
        environment = services.create_environment(by=request.user, **data)
        return Response(EnvironmentSerializer(environment).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=EnvironmentUpdateSerializer, responses={200: EnvironmentSerializer})
    def partial_update(self, request, name=None):
        environment = self.get_object()
        data = validated(EnvironmentUpdateSerializer, request, partial=True, instance=environment)
        environment = services.update_environment(environment, by=request.user, **data)
        return Response(self.rendered(environment, EnvironmentSerializer))

    @extend_schema(request=PublishSerializer, responses={200: BundleSerializer, 202: ApprovalRequestSerializer})
    @action(detail=True, methods=["post"])
    def publish(self, request, name=None):
        """Run the policy tests, build a bundle of the current policies and activate it here.
        Needs `impact_preview` (a finished preview of these policies) or `override_reason`.
        In a four-eyes environment (prod by default): 202 with the approval request instead."""
        data = validated(PublishSerializer, request)
        published = publish_with_preview_or_override(self.get_object(), by=request.user, **data)
        if isinstance(published, ApprovalRequest):
            return Response(ApprovalRequestSerializer(published, context={"request": request}).data, status=202)
        return Response(BundleSerializer(published).data)

    @extend_schema(request=PromoteSerializer, responses={200: BundleSerializer, 202: ApprovalRequestSerializer})
    @action(detail=True, methods=["post"])
    def promote(self, request, name=None):
        """Run the policies active here in the environment named by `to`, with its own registry data.
        Into a four-eyes environment (prod by default): 202 with the approval request instead."""
        data = validated(PromoteSerializer, request)
        source = self.get_object()
        if source.pk != data["to"].pk:  # a promotion to itself is refused by the service (400)
            held = held_release(data["to"], by=request.user, operation="promote", source=source,
                                message=data.get("message", ""))
            if held is not None:
                return Response(ApprovalRequestSerializer(held, context={"request": request}).data, status=202)
        bundle = services.promote_bundle(source, by=request.user, **data)
        return Response(BundleSerializer(bundle).data)

    @extend_schema(request=RollbackSerializer, responses={200: BundleSerializer})
    @action(detail=True, methods=["post"])
    def rollback(self, request, name=None):
        """Go back to the policies active before the latest activation (registry data stays current)."""
        data = validated(RollbackSerializer, request)
        bundle = services.rollback_bundle(self.get_object(), by=request.user, **data)
        return Response(BundleSerializer(bundle).data)

    @extend_schema(responses={200: ActivationSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def activations(self, request, name=None):
        """Which bundle was active when, and who made it so."""
        activations = self.get_object().activations.select_related("bundle", "previous_bundle", "activated_by")
        page = self.paginate_queryset(activations)
        return self.get_paginated_response(ActivationSerializer(page, many=True).data)


class EnvironmentTokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, WardenViewSet):
    """Bearer tokens with which OPA or a Warden sidecar in one environment pulls bundles and
    sends decision logs and status. Admins only; the plaintext is shown once."""

    serializer_class = EnvironmentTokenSerializer
    read_roles = (Role.ADMIN,)
    lookup_value_regex = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    parent_lookup = (Environment, "environment_name", "name")

    def get_queryset(self):
        return EnvironmentToken.objects.filter(environment__name=self.kwargs.get("environment_name"))

    @extend_schema(request=EnvironmentTokenCreateSerializer, responses={201: EnvironmentTokenCreatedSerializer})
    def create(self, request, environment_name=None):
        environment = self.parent
        data = validated(EnvironmentTokenCreateSerializer, request)
        token, plaintext = services.create_environment_token(environment, by=request.user, **data)
        body = EnvironmentTokenCreatedSerializer(token).data | {"token": plaintext}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None}, description="Revoke the token; OPA using it gets 401 from then on.")
    def destroy(self, request, environment_name=None, pk=None):
        services.revoke_environment_token(self.get_object(), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BundleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Every bundle ever built: immutable, signed, content-addressed by revision."""

    queryset = Bundle.objects.select_related("environment", "built_by").defer("archive", "members")
    serializer_class = BundleSerializer
    filterset_fields = {"environment__name": ["exact"], "revision": ["exact"]}
    ordering_fields = ["created_at", "size"]

    @extend_schema(responses={(200, "application/gzip"): OpenApiResponse(OpenApiTypes.BINARY)})
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        """The bundle archive exactly as engines receive it."""
        bundle = get_object_or_404(Bundle.objects.only("archive", "members", "etag", "revision"), pk=pk)
        response = HttpResponse(bytes(bundle.archive), content_type="application/gzip")
        response["ETag"] = bundle.etag
        response["Content-Disposition"] = f'attachment; filename="bundle-{bundle.revision[:12]}.tar.gz"'
        return response


class SigningKeyViewSet(viewsets.ReadOnlyModelViewSet):
    """The keys that sign bundles; configure OPA or the SDK with the active key's public PEM."""

    queryset = SigningKey.objects.defer("encrypted_private_key")
    serializer_class = SigningKeySerializer
    lookup_value_regex = r"[a-z0-9\-]+"
    filterset_fields = ["is_active"]
