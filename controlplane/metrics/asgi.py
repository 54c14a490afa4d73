"""Counts and times every HTTP request, those the bundle fast path answers before Django too."""

from __future__ import annotations

import re
import time

from controlplane.metrics.instruments import HTTP_REQUESTS, HTTP_SECONDS

_OPA = re.compile(r"^/opa/(bundles|discovery|logs|status)(?:/|$)")
_API = re.compile(r"^/api/v1/([a-z][a-z-]{0,40})(?:/|$)")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_of(path: str, status: int) -> str:
    """A bounded label: a 404 is "not_found", whatever path a scanner made up."""
    if status == 404:
        return "not_found"
    if match := _OPA.match(path):
        return f"opa_{match.group(1)}"
    if match := _API.match(path):
        return f"api_{match.group(1).replace('-', '_')}"
    if path in ("/healthz", "/readyz", "/livez", "/metrics"):
        return path.strip("/")
    for prefix in ("/api/", "/admin/", "/static/"):
        if path.startswith(prefix):
            return prefix.strip("/")
    return "console"


class RequestMetrics:
    """ASGI middleware, outermost: request counter by route group, method and status class."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0  # no answer started: the client went away first, or the handler raised

        async def observe(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            route = route_of(scope.get("path", ""), status)
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(route=route, method=method if method in _METHODS else "other",
                                 status=f"{status // 100}xx" if status else "none").inc()
            HTTP_SECONDS.labels(route=route).observe(time.perf_counter() - started)
