"""The metrics code paths update. With PROMETHEUS_MULTIPROC_DIR set (prefork Celery workers,
several uvicorn workers in one pod), every process writes its values there and the scrape
adds them up; otherwise they live in this process."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.registry import REGISTRY

F = TypeVar("F", bound=Callable[..., Any])

# Each metric below opens its file there as it is defined: the directory must exist first
# (deploy/ points it into the pod's fresh /tmp emptyDir).
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

# Long polls are held ~30 s, so the latency buckets reach past a minute.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

HTTP_REQUESTS = Counter(
    "warden_http_requests", "HTTP requests answered, by route group, method and status class",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "warden_http_request_duration_seconds", "Time to answer an HTTP request (long polls included)",
    ["route"], buckets=LATENCY_BUCKETS,
)
LONG_POLLS_HELD = Gauge(
    "warden_opa_long_polls_held", "Bundle and discovery long polls held open right now",
    multiprocess_mode="livesum",
)
BUNDLE_BUILD_SECONDS = Histogram(
    "warden_bundle_build_seconds", "Time to build and sign an environment's bundle (publish or registry change)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
AUDIT_INGESTION_LAG = Histogram(
    "warden_audit_ingestion_lag_seconds", "From a batch's arrival to the end of its verification",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
AUDIT_EVENTS_STORED = Counter("warden_audit_events_stored", "Audit events verified and stored")
AUDIT_RECORDS_QUARANTINED = Counter(
    "warden_audit_records_quarantined", "Records quarantined by the verification, by reason", ["reason"],
)
TASKS = Counter("warden_celery_tasks", "Celery tasks finished, by task name and outcome", ["task", "outcome"])
TASK_SECONDS = Histogram(
    "warden_celery_task_duration_seconds", "Run time of Celery tasks", ["task"], buckets=LATENCY_BUCKETS,
)


def registry() -> CollectorRegistry:
    """The registry a scrape reads: every process's values in multiprocess mode, else this one's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined)
        return combined
    return REGISTRY


def timed(histogram: Histogram) -> Callable[[F], F]:
    """Observe a function's run time in `histogram`, whether it returns or raises."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                histogram.observe(time.perf_counter() - started)

        return wrapper  # type: ignore[return-value]

    return decorate


def record_verified_batch(outcome: Any) -> None:
    """Count what a verification stored and quarantined, and how long the batch waited."""
    if outcome is None or outcome.already_verified or outcome.parked:
        return
    AUDIT_EVENTS_STORED.inc(outcome.events)
    for reason, count in (outcome.reasons or {}).items():
        AUDIT_RECORDS_QUARANTINED.labels(reason=str(reason)[:40]).inc(count)
    from controlplane.audit.models import Batch  # the worker has Django set up by now

    times = Batch.objects.filter(pk=outcome.batch_id).values_list("received_at", "verified_at").first()
    if times and times[1]:
        AUDIT_INGESTION_LAG.observe(max(0.0, (times[1] - times[0]).total_seconds()))
