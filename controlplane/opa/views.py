"""OPA's management APIs, as a real OPA calls them (docs/opa.md has the configuration).

    GET  bundles/<env>     Bundle Service API: ETag / If-None-Match → 304, long polling
    GET  discovery/<env>   a signed discovery bundle carrying the OPA configuration
    POST logs              Decision Log API: a JSON array of events, gzip or not
    POST status            Status API: one OPA instance's state

Thin adapters: authenticate the environment token, translate the wire format, call a
selector or service, render. Plain Django views, not DRF: OPA needs no content
negotiation, the bundle view must be async for long polls, and these endpoints belong to
OPA's API, not to the /api/v1 schema. No session authentication, no CSRF: the only
credential is the bearer token.
"""

from __future__ import annotations

import functools

from django.http import HttpResponse, HttpResponseNotModified, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from controlplane.core.exceptions import InvalidInput
from controlplane.opa import services, uploads
from controlplane.opa.authentication import AuthenticationFailed, aauthenticate
from controlplane.opa.bundle_service import BUNDLE_PARTS, Reply, bundle_reply, discovery_reply, unauthorized
from controlplane.opa.database import run_in_db_thread
from controlplane.opa.payloads import (
    PayloadTooLarge,
    UnsupportedEncoding,
    decode_body,
    parse_json,
    parse_json_values_later,
    read_body,
)


def _detail(status: int, message: str) -> JsonResponse:
    return JsonResponse({"detail": message}, status=status)


def _error_response(exc: Exception) -> HttpResponse:
    if isinstance(exc, AuthenticationFailed):
        return _http_response(unauthorized(exc))
    if isinstance(exc, PayloadTooLarge):
        return _detail(413, exc.message)
    if isinstance(exc, UnsupportedEncoding):
        return _detail(415, exc.message)
    if isinstance(exc, InvalidInput):
        return JsonResponse({exc.field: [exc.message]}, status=400)
    raise exc


_PROTOCOL_ERRORS = (AuthenticationFailed, PayloadTooLarge, UnsupportedEncoding, InvalidInput)


def opa_endpoint(view):
    """For the (async) OPA views: CSRF-exempt, since the only credential is the bearer
    token, and protocol errors rendered as 4xx with a message."""

    @functools.wraps(view)
    async def wrapper(request, *args, **kwargs):
        try:
            return await view(request, *args, **kwargs)
        except _PROTOCOL_ERRORS as exc:
            return _error_response(exc)

    return csrf_exempt(wrapper)


async def _chunks(chunks: tuple[bytes, ...]):
    for chunk in chunks:
        yield chunk


def _http_response(reply: Reply) -> HttpResponse | StreamingHttpResponse:
    if reply.status == 304:
        response = HttpResponseNotModified()
    elif isinstance(reply.body, bytes):
        response = HttpResponse(reply.body, status=reply.status, content_type=reply.headers.get("Content-Type"))
    else:  # a snapshot's members, written as asgi.BundleServiceFastPath writes them
        response = StreamingHttpResponse(_chunks(reply.body), status=reply.status,
                                         content_type=reply.headers.get("Content-Type"))
        response["Content-Length"] = str(reply.content_length)
    for name, value in reply.headers.items():
        if name != "Content-Type":
            response[name] = value
    return response


def _downloader_headers(request) -> dict:
    return {
        "authorization": request.headers.get("Authorization", ""),
        "if_none_match": request.headers.get("If-None-Match"),
        "prefer": request.headers.get("Prefer"),
    }


@opa_endpoint
@require_GET
async def bundle(request, environment: str, part: str = ""):
    """The environment's active bundle (OPA `bundles.<env>.resource: bundles/<env>`), or its
    policy or registry part (`bundles/<env>/policy`, `bundles/<env>/registry`).
    Under uvicorn, asgi.BundleServiceFastPath answers these paths before Django does."""
    if part not in BUNDLE_PARTS:
        return _detail(404, f"no bundle part {part!r}: use policy or registry")
    return _http_response(await bundle_reply(environment, part=part, query_string=request.META.get("QUERY_STRING", ""),
                                             **_downloader_headers(request)))


@opa_endpoint
@require_GET
async def discovery(request, environment: str):
    """The environment's discovery bundle (OPA boot config `discovery.resource: discovery/<env>`)."""
    return _http_response(await discovery_reply(environment, **_downloader_headers(request)))


def _ingest_logs(client, body: bytes, content_encoding: str):
    raw = decode_body(body, content_encoding, max_inflated_bytes=services.MAX_LOG_INFLATED_BYTES)
    return services.ingest_decision_logs(client.environment(), parse_json_values_later(raw))


def _record_status(client, body: bytes, content_encoding: str):
    raw = decode_body(body, content_encoding, max_inflated_bytes=services.MAX_STATUS_BYTES)
    return services.record_status(client.environment(), parse_json(raw))


# The upload views are async too: their queries (and the inflating and parsing) run in the
# bounded database threads, so a fleet posting status at every poll does not open a
# database connection per request.


async def _queued(request, kind: str, max_bytes: int) -> HttpResponse:
    body = read_body(request, max_bytes=max_bytes)
    return _http_response(await uploads.upload_reply(
        kind, authorization=request.headers.get("Authorization", ""),
        content_encoding=request.headers.get("Content-Encoding", ""), body=body,
    ))


@opa_endpoint
@require_POST
async def decision_logs(request, partition: str | None = None):
    """A decision log upload: `[event, …]`, gzip-compressed as OPA sends it, or plain.
    Queued and stored by a worker when Celery runs on Redis (controlplane.opa.uploads)."""
    if uploads.enabled():
        return await _queued(request, uploads.LOGS, services.MAX_LOG_UPLOAD_BYTES)
    client = await aauthenticate(request.headers.get("Authorization", ""))
    body = read_body(request, max_bytes=services.MAX_LOG_UPLOAD_BYTES)
    result = await run_in_db_thread(_ingest_logs, client, body, request.headers.get("Content-Encoding", ""))
    # 200 even with rejected events: they are kept apart with their reason (see services).
    return JsonResponse({"received": result.received, "stored": result.stored, "rejected": result.rejected})


@opa_endpoint
@require_POST
async def status(request, partition: str | None = None):
    """A status report of one OPA instance, sent at every bundle poll and plugin change."""
    if uploads.enabled():
        return await _queued(request, uploads.STATUS, services.MAX_STATUS_BYTES)
    client = await aauthenticate(request.headers.get("Authorization", ""))
    body = read_body(request, max_bytes=services.MAX_STATUS_BYTES)
    instance = await run_in_db_thread(_record_status, client, body, request.headers.get("Content-Encoding", ""))
    return JsonResponse({"instance_id": instance.instance_id, "active_revision": instance.active_revision})
