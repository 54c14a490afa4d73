from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.accounts.roles import Role
from controlplane.core.api import validated
from controlplane.policies import services
from controlplane.policies.api.serializers import (
    PolicyDeleteSerializer,
    PolicyModuleCreateSerializer,
    PolicyModuleSerializer,
    PolicyModuleUpdateSerializer,
    PolicyRevisionSerializer,
    PolicyTestReportSerializer,
    ToolSerializer,
    ToolUpdateSerializer,
)
from controlplane.policies.library import library_modules
from controlplane.policies.models import PolicyModule, Tool

POLICY_WRITERS = (Role.ADMIN, Role.POLICY_AUTHOR)


class PolicyModuleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Organisation Rego modules. Every save compiles with the library and the other
    modules; a Rego error is a 400 naming file, line and column."""

    queryset = PolicyModule.objects.select_related("current_revision__author")
    serializer_class = PolicyModuleSerializer
    write_roles = POLICY_WRITERS
    action_roles = {"run_tests": POLICY_WRITERS}
    filterset_fields = ["is_deleted", "package"]
    search_fields = ["path", "package"]
    ordering_fields = ["path", "updated_at"]

    @extend_schema(request=PolicyModuleCreateSerializer, responses={201: PolicyModuleSerializer})
    def create(self, request):
        data = validated(PolicyModuleCreateSerializer, request)
        if PolicyModule.objects.filter(path=data["path"], is_deleted=False).exists():
            return Response({"path": ["a module with this path exists; PATCH it to add a revision"]}, status=409)
        revision = services.save_policy_module(by=request.user, **data)
        return Response(self._render(revision.module), status=status.HTTP_201_CREATED)

    @extend_schema(request=PolicyModuleUpdateSerializer, responses={200: PolicyModuleSerializer})
    def partial_update(self, request, pk=None):
        """Save a new revision of the module's source."""
        module = self.get_object()
        data = validated(PolicyModuleUpdateSerializer, request)
        services.save_policy_module(path=module.path, by=request.user, **data)
        return Response(self._render(module))

    @extend_schema(request=PolicyDeleteSerializer, responses={204: None})
    def destroy(self, request, pk=None):
        """Leave the module out of future bundles; its revisions are kept."""
        data = validated(PolicyDeleteSerializer, request)
        services.delete_policy_module(self.get_object(), by=request.user, **data)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={200: PolicyRevisionSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def revisions(self, request, pk=None):
        """Every revision of the module, newest first, with author, message and diff."""
        revisions = self.get_object().revisions.select_related("author").order_by("-number")
        page = self.paginate_queryset(revisions)
        return self.get_paginated_response(PolicyRevisionSerializer(page, many=True).data)

    @extend_schema(request=None, responses={200: PolicyTestReportSerializer})
    @action(detail=False, methods=["post"], url_path="test")
    def run_tests(self, request):
        """Run the library's and the organisation's policy tests (test_ rules in *_test.rego)."""
        report = services.run_policy_tests(library_modules() | services.organisation_modules())
        body = {
            "passed": report.passed,
            "failed": report.failed,
            "results": [{"test": r.path, "passed": r.passed, "message": r.message or ""} for r in report.results],
        }
        return Response(body)

    def _render(self, module: PolicyModule):
        return PolicyModuleSerializer(self.get_queryset().get(pk=module.pk)).data


class ToolViewSet(viewsets.ModelViewSet):
    """The tool catalog: which scopes each tool needs, its category and whether calls are
    irreversible. It travels to engines in bundle data; unknown tools are denied."""

    queryset = Tool.objects.all()
    serializer_class = ToolSerializer
    lookup_field = "name"
    lookup_value_regex = r"[a-z][a-z0-9_.\-]*"
    write_roles = POLICY_WRITERS
    filterset_fields = ["category", "irreversible"]
    search_fields = ["name", "description"]
    ordering_fields = ["name", "updated_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def create(self, request):
        data = validated(ToolSerializer, request)
        tool = services.create_tool(by=request.user, **data)
        return Response(ToolSerializer(tool).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ToolUpdateSerializer, responses={200: ToolSerializer})
    def partial_update(self, request, name=None):
        data = validated(ToolUpdateSerializer, request, partial=True)
        tool = services.update_tool(self.get_object(), by=request.user, **data)
        return Response(ToolSerializer(tool).data)

    def destroy(self, request, name=None):
        services.delete_tool(self.get_object(), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
