"""Queue Celery work from services without importing tasks (imports run one way).

Services call ``enqueue("audit.verify_batch", batch.pk)``: the task is sent by its stable
name once the surrounding transaction commits, so a worker never sees a row that a
rollback took away.
"""

from __future__ import annotations

import logging

from celery import current_app
from django.db import transaction

logger = logging.getLogger(__name__)


def send_now(name: str, *args: object, queue: str | None = None) -> None:
    """Send task ``name`` at once; in eager mode (the embedded default) run it in-process."""
    app = current_app
    if app.conf.task_always_eager:
        # send_task ignores task_always_eager; run the registered task in-process instead.
        app.tasks[name].apply(args=args, throw=app.conf.task_eager_propagates)
        return
    app.send_task(name, args=args, queue=queue)


def enqueue(name: str, *args: object, queue: str | None = None) -> None:
    """Send task ``name`` after the current transaction commits.

    ``robust``: a broker outage must not turn a committed write into a 500; the periodic
    jobs (stale requeue, reconcile) pick the work up later.
    """
    transaction.on_commit(lambda: send_now(name, *args, queue=queue), robust=True)
