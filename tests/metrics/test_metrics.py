"""GET /metrics, /livez and /readyz through the project's ASGI application, with the real
PostgreSQL and Redis: what Prometheus and the kubelet see."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controlplane.asgi import application
from controlplane.opa.database import close_db_connections

pytestmark = pytest.mark.django_db(transaction=True)


def fetch(*requests: tuple[str, dict]) -> list[httpx.Response]:
    async def scenario():
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return [await client.get(path, **kwargs) for path, kwargs in requests]

    try:
        return asyncio.run(scenario())
    finally:
        close_db_connections()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_liveness_needs_nothing_and_readiness_checks_database_and_redis(settings):
    live, ready = fetch(("/livez", {}), ("/readyz", {}))
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "database": "ok", "redis": "ok"})

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    (unready,) = fetch(("/readyz", {}))
    assert unready.status_code == 503
    assert unready.json() == {"status": "not ready", "database": "ok", "redis": "unavailable"}


def test_metrics_count_requests_by_bounded_route_and_read_the_backlog():
    before = samples(fetch(("/metrics", {}))[0].text)
    probes = [("/livez", {})] * 3 + [(f"/api/v1/made-up-{i}/", {}) for i in range(5)]
    fetch(*probes)
    response, = fetch(("/metrics", {}))
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    after = samples(response.text)

    def grew(route, status):
        key = ("warden_http_requests_total", (("method", "GET"), ("route", route), ("status", status)))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("livez", "2xx") == 3
    assert grew("not_found", "4xx") == 5  # a scanner's paths never become labels
    assert not any("made" in str(labels) for _, labels in after)
    assert after[("warden_state_up", ())] == 1
    for gauge in ("warden_audit_batches_pending", "warden_audit_oldest_pending_batch_age_seconds",
                  "warden_audit_quarantined_records", "warden_opa_instances"):
        assert after[(gauge, ())] == 0
    assert ("warden_celery_queue_length", (("queue", "celery"),)) in after
    assert ("warden_opa_long_polls_held", ()) in after


def test_the_metrics_token_is_required_when_set(settings):
    settings.WARDEN_METRICS_TOKEN = "s3cret-scrape-token"
    missing, wrong, right = fetch(("/metrics", {}), ("/metrics", {"headers": {"Authorization": "Bearer nope"}}),
                                  ("/metrics", {"headers": {"Authorization": "Bearer s3cret-scrape-token"}}))
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert "warden_http_requests_total" in right.text


def test_a_failed_backlog_read_still_answers_the_scrape(settings, monkeypatch):
    from controlplane.metrics import state

    monkeypatch.setattr(state, "STATE", state.StateCollector())
    monkeypatch.setattr("controlplane.metrics.views.STATE", state.STATE)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response, = fetch(("/metrics", {}))
    assert response.status_code == 200
    assert samples(response.text)[("warden_state_up", ())] == 0
