"""AuthZEN endpoints per environment: thin adapters over controlplane.interop.services.

    /authzen/<environment>/access/v1/evaluation | evaluations
    /authzen/<environment>/.well-known/authzen-configuration

Authenticated with the environment's token (`Authorization: Bearer …`), as OPA is.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from controlplane.bundles.models import Environment
from controlplane.interop import services
from controlplane.opa.authentication import AuthenticationFailed, aauthenticate
from controlplane.opa.database import run_in_db_thread

MAX_BODY = 4 * 1024 * 1024


def _answer(environment_id: str, method: str, path: str, body: bytes, base_url: str, requested_by: str):
    environment = Environment.objects.get(pk=environment_id)
    return services.answer(environment, method, path, body, base_url=base_url, requested_by=requested_by)


@csrf_exempt
async def authzen(request: HttpRequest, environment: str, endpoint: str) -> JsonResponse:
    try:
        client = await aauthenticate(request.headers.get("Authorization", ""))
    except AuthenticationFailed as exc:
        return JsonResponse({"detail": exc.message}, status=401)
    if client.environment_name != environment:
        return JsonResponse({"detail": f"this token belongs to environment {client.environment_name!r}"}, status=403)
    body = request.body
    if len(body) > MAX_BODY:
        return JsonResponse({"detail": f"body larger than {MAX_BODY} bytes"}, status=413)
    base_url = request.build_absolute_uri(f"/authzen/{environment}").rstrip("/")
    requested_by = request.META.get("REMOTE_ADDR", "")
    status, payload = await run_in_db_thread(_answer, client.environment_id, request.method or "GET",
                                             "/" + endpoint, body, base_url, requested_by)
    return JsonResponse(payload, status=status, safe=False)
