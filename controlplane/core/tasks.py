"""Queue Celery work from services without importing tasks (imports run one way).

Services call ``enqueue("audit.verify_batch", batch.pk)``: the task is sent by its stable
name once the surrounding transaction commits, so a worker never sees a row that a
rollback took away.

A broker outage never holds a request: the publish is tried once, with the short connect
timeout of WARDEN_BROKER_TIMEOUT (settings: no publish retries), and a failure is logged;
the periodic jobs (audit stale requeue, bundle reconcile, compliance requeue) send the work
later from the database, which is the source of truth.
"""

from __future__ import annotations

import logging

from celery import current_app
from django.db import transaction
from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)


def _registered_task(app, name: str):
    if name not in app.tasks:
        # A web process imports task modules only when it first needs one.
        app.loader.import_default_modules()
    return app.tasks[name]


def send_now(name: str, *args: object, queue: str | None = None) -> None:
    """Send task ``name`` at once; in eager mode (the embedded default) run it in-process."""
    app = current_app
    if app.conf.task_always_eager:
        # send_task ignores task_always_eager; run the registered task in-process instead.
        _registered_task(app, name).apply(args=args, throw=app.conf.task_eager_propagates)
        return
    # Results are never read (tasks write to the database), so the result backend is not
    # contacted either: it would retry a dead Redis 20 times.
    app.send_task(name, args=args, queue=queue, retry=False, ignore_result=True)


def _send_after_commit(name: str, args: tuple, queue: str | None) -> None:
    try:
        send_now(name, *args, queue=queue)
    except (OperationalError, OSError) as exc:
        logger.warning("could not queue %s%r (%s); the periodic requeue picks it up", name, args, exc)


def enqueue(name: str, *args: object, queue: str | None = None) -> None:
    """Send task ``name`` after the current transaction commits.

    ``robust``: a broker outage (or a failing eager task) must not turn a committed write
    into a 500; the periodic jobs (stale requeue, reconcile) pick the work up later.
    """
    transaction.on_commit(lambda: _send_after_commit(name, args, queue), robust=True)
