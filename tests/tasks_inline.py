"""Celery tasks run in the calling process, at commit, as on the embedded default (no broker)."""

from collections.abc import Iterator
from contextlib import contextmanager

from controlplane.celery import app as celery_app


@contextmanager
def tasks_run_inline() -> Iterator[None]:
    celery_app.loader.import_default_modules()  # registers every app's tasks (autodiscovery is lazy)
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = before
