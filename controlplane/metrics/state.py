"""Gauges read from PostgreSQL and Redis when Prometheus scrapes the web tier: the backlog
the workers have not caught up with, whatever process is (or is not) working on it.

Cached for a few seconds, so several scrapers or replicas cost a handful of queries."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from django.conf import settings
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CACHE_SECONDS = 5.0


def _queue_names() -> list[str]:
    from controlplane.audit import conf

    return sorted({"celery", conf.verify_queue()})


def _read_state() -> dict[str, object]:
    from controlplane.audit.models import Batch, BatchStatus, Checkpoint, QuarantinedRecord
    from controlplane.opa import uploads
    from controlplane.opa.models import OPAInstance

    now = timezone.now()
    pending = Batch.objects.filter(status=BatchStatus.PENDING)
    oldest = pending.order_by("received_at").values_list("received_at", flat=True).first()
    last_checkpoint = Checkpoint.objects.order_by("-sequence").values_list("created_at", flat=True).first()
    state: dict[str, object] = {
        "pending_batches": pending.count(),
        "parked_batches": Batch.objects.filter(status=BatchStatus.PARKED).count(),
        "oldest_pending_age": (now - oldest).total_seconds() if oldest else 0.0,
        "quarantined": QuarantinedRecord.objects.count(),
        "checkpoint_age": (now - last_checkpoint).total_seconds() if last_checkpoint else None,
        "opa_instances": OPAInstance.objects.count(),
        "queues": {},
    }
    if getattr(settings, "REDIS_URL", ""):
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        try:
            state["queues"] = {name: int(client.llen(name)) for name in _queue_names()}
            state["uploads"] = uploads.backlog(client)
        finally:
            client.close()
    return state


class StateCollector(Collector):
    """Backlog gauges; a failed read reports warden_state_up 0 instead of failing the scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, object] | None] = (0.0, None)

    def _state(self) -> dict[str, object] | None:
        with self._lock:
            at, state = self._cached
            if state is None or time.monotonic() - at > CACHE_SECONDS:
                try:
                    state = _read_state()
                except Exception:  # noqa: BLE001 - the scrape must still answer, saying what failed
                    state = None
                self._cached = (time.monotonic(), state)
            return state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self._state()
        yield GaugeMetricFamily("warden_state_up", "1 when the database and Redis could be read", value=int(bool(state)))
        if not state:
            return
        gauges = (
            ("warden_audit_batches_pending", "Audit batches stored and not yet verified", "pending_batches"),
            ("warden_audit_batches_parked", "Audit batches parked after repeated failures", "parked_batches"),
            ("warden_audit_oldest_pending_batch_age_seconds", "Ingestion lag: age of the oldest unverified batch",
             "oldest_pending_age"),
            ("warden_audit_quarantined_records", "Records held in quarantine", "quarantined"),
            ("warden_opa_instances", "OPA and sidecar instances that reported status", "opa_instances"),
        )
        for name, documentation, key in gauges:
            yield GaugeMetricFamily(name, documentation, value=float(state[key]))  # type: ignore[arg-type]
        if state["checkpoint_age"] is not None:
            yield GaugeMetricFamily("warden_audit_last_checkpoint_age_seconds",
                                    "Seconds since the last signed checkpoint (beat runs one a minute)",
                                    value=float(state["checkpoint_age"]))  # type: ignore[arg-type]
        queues = GaugeMetricFamily("warden_celery_queue_length", "Tasks waiting in a Celery queue", labels=["queue"])
        for queue, length in state["queues"].items():  # type: ignore[attr-defined]
            queues.add_metric([queue], float(length))
        yield queues
        upload_gauges = (
            ("warden_opa_upload_queue_items", "Status and decision-log uploads waiting for a worker", "items"),
            ("warden_opa_upload_queue_bytes", "Bytes of uploads waiting for a worker", "bytes"),
            ("warden_opa_uploads_set_aside", "Uploads that could not be stored, kept with their reason", "set_aside"),
        )
        for name, documentation, key in upload_gauges if state.get("uploads") else ():
            yield GaugeMetricFamily(name, documentation, value=float(state["uploads"][key]))  # type: ignore[index]


STATE = StateCollector()
