"""The workers' metrics: task counts and run times from Celery's signals, served by the
worker's main process on WARDEN_METRICS_PORT (PROMETHEUS_MULTIPROC_DIR gathers the prefork
children's values; deploy/ mounts an emptyDir there)."""

from __future__ import annotations

import os
import time

from celery import signals
from django.conf import settings
from prometheus_client import start_http_server

from controlplane.metrics.instruments import TASK_SECONDS, TASKS, registry

_started: dict[str, float] = {}


@signals.task_prerun.connect
def _task_started(task_id=None, **_):
    _started[task_id] = time.perf_counter()


@signals.task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **_):
    name = getattr(task, "name", "unknown") or "unknown"
    TASKS.labels(task=name, outcome=str(state or "UNKNOWN").lower()).inc()
    started = _started.pop(task_id, None)
    if started is not None:
        TASK_SECONDS.labels(task=name).observe(time.perf_counter() - started)


@signals.worker_ready.connect
def _serve_metrics(**_):
    port = settings.WARDEN_METRICS_PORT
    if port:
        start_http_server(port, addr="0.0.0.0", registry=registry())  # a pod port; see deploy/


@signals.worker_process_shutdown.connect
def _forget_child(pid=None, **_):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
