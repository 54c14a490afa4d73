"""The console's own endpoints: a cookie session for people in a browser, and the
decision playground. Every other page talks to the public REST API."""

from __future__ import annotations

from django.contrib.auth import authenticate, login, logout
from django.middleware.csrf import get_token
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import ensure_csrf_cookie
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.accounts.api.serializers import UserSerializer
from controlplane.accounts.roles import ALL_ROLES
from controlplane.bundles.models import Environment
from controlplane.console import playground
from controlplane.console.api.serializers import (
    LoginSerializer,
    PlaygroundRequestSerializer,
    PlaygroundResultSerializer,
    SessionSerializer,
)
from controlplane.core.api import validated
from controlplane.core.exceptions import InvalidInput
from controlplane.identity.models import Agent


def _session_body(request, user) -> dict:
    user = user if user is not None and user.is_authenticated else None
    return {
        "authenticated": user is not None,
        "user": UserSerializer(user).data if user is not None else None,
        "csrf_token": get_token(request),
        "expires_in": request.session.get_expiry_age() if user is not None else 0,
    }


@method_decorator(ensure_csrf_cookie, name="dispatch")
class SessionView(APIView):
    """GET: who is logged in (and a CSRF cookie). POST: log in. DELETE: log out."""

    permission_classes = [permissions.AllowAny]
    # Only the session cookie: a token-authenticated script has no business here.
    authentication_classes = [SessionAuthentication]

    @extend_schema(responses={200: SessionSerializer}, auth=[])
    def get(self, request):
        return Response(_session_body(request, request.user))

    @extend_schema(request=LoginSerializer, responses={200: SessionSerializer}, auth=[])
    def post(self, request):
        # Login needs CSRF too (login CSRF), which DRF checks only for logged-in users.
        SessionAuthentication().enforce_csrf(request)
        data = validated(LoginSerializer, request)
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None or not user.is_active:
            # One message for both cases, so the form cannot be used to find usernames.
            raise InvalidInput("wrong username or password", field="password")
        login(request._request, user)
        return Response(_session_body(request, user))

    @extend_schema(request=None, responses={204: None}, auth=[])
    def delete(self, request):
        SessionAuthentication().enforce_csrf(request)
        logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PlaygroundView(APIView):
    """Dry run: the decision of an environment's active bundle for one tool call.

    Every role may use it; it reads policies and the registry and records nothing
    (no audit event, no decision log, no change log entry)."""

    write_roles = ALL_ROLES

    @extend_schema(request=PlaygroundRequestSerializer, responses={200: PlaygroundResultSerializer})
    def post(self, request):
        data = validated(PlaygroundRequestSerializer, request)
        environment = Environment.objects.select_related("active_bundle").filter(name=data["environment"]).first()
        if environment is None:
            raise InvalidInput(f"no environment named {data['environment']!r}", field="environment")
        agent = Agent.objects.filter(name=data["agent"]).first()
        if agent is None:
            raise InvalidInput(f"no agent named {data['agent']!r} in the registry", field="agent")
        result = playground.dry_run(
            environment, agent=agent, tool=data["tool"], args=data["args"], context=data["context"]
        )
        return Response(result)


