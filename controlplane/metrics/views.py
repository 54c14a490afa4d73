"""GET /metrics on the web tier: Prometheus text format, with the backlog gauges."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from controlplane.metrics.instruments import registry
from controlplane.metrics.state import STATE


class _WithState(CollectorRegistry):
    """The process (or multiprocess) registry plus the scrape-time state gauges."""

    def __init__(self, base: CollectorRegistry) -> None:
        super().__init__(auto_describe=False)
        self.base = base

    def collect(self):  # type: ignore[no-untyped-def]
        yield from self.base.collect()
        yield from STATE.collect()


def metrics(request: HttpRequest) -> HttpResponse:
    """Unauthenticated unless WARDEN_METRICS_TOKEN is set (then `Authorization: Bearer <token>`);
    deploy/ also keeps it to the monitoring namespace with a NetworkPolicy."""
    token = settings.WARDEN_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return HttpResponse("metrics need the bearer token (WARDEN_METRICS_TOKEN)\n", status=401,
                                content_type="text/plain")
    return HttpResponse(generate_latest(_WithState(registry())), content_type=CONTENT_TYPE_LATEST)
