"""The periodic jobs of the embedded default, run by a scheduler thread of the web process.

With REDIS_URL set, `celery beat` sends the jobs in controlplane/celery.py to workers.
Without it there is no beat and no worker, and nothing would ever reconcile a bundle,
write a checkpoint, apply retention or requeue a stale batch: this thread reads the same
`beat_schedule`, asks Celery's own schedule objects when each job is due, and runs it
in-process (tasks are eager there). It starts with the ASGI application's lifespan
(`make run`), when WARDEN_IN_PROCESS_JOBS is on.
"""

from __future__ import annotations

import logging
import threading

from celery.schedules import maybe_schedule
from django.conf import settings
from django.db import close_old_connections

from controlplane.core.tasks import send_now

logger = logging.getLogger(__name__)


class InProcessJobs:
    def __init__(self, beat_schedule: dict, *, tick_seconds: float = 1.0) -> None:
        self._jobs = {name: (entry["task"], maybe_schedule(entry["schedule"])) for name, entry in beat_schedule.items()}
        self._tick = tick_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs: dict[str, int] = {name: 0 for name in self._jobs}
        self.failures: dict[str, int] = {name: 0 for name in self._jobs}

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="warden-in-process-jobs", daemon=True)
        self._thread.start()
        logger.info("in-process jobs started: %s", ", ".join(sorted(self._jobs)))

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        # As beat does at start: each job first runs one interval after start-up.
        last_run = {name: schedule.now() for name, (_, schedule) in self._jobs.items()}
        while not self._stop.wait(self._tick):
            for name, (task, schedule) in self._jobs.items():
                due, _ = schedule.is_due(last_run[name])
                if due:
                    last_run[name] = schedule.now()
                    self.run_once(name, task)

    def run_once(self, name: str, task: str) -> None:
        close_old_connections()
        try:
            send_now(task)
            self.runs[name] += 1
        except Exception:  # noqa: BLE001 - one failing job must not stop the others; beat would retry too
            self.failures[name] += 1
            logger.exception("in-process job %s (%s) failed", name, task)
        finally:
            close_old_connections()


_jobs: InProcessJobs | None = None


def start_in_process_jobs() -> InProcessJobs | None:
    """Start the scheduler thread once per process, if WARDEN_IN_PROCESS_JOBS is on."""
    global _jobs
    if not settings.WARDEN_IN_PROCESS_JOBS or _jobs is not None:
        return _jobs
    from controlplane.celery import app

    _jobs = InProcessJobs(app.conf.beat_schedule)
    _jobs.start()
    return _jobs


def stop_in_process_jobs() -> None:
    global _jobs
    if _jobs is not None:
        _jobs.stop()
        _jobs = None



class LifespanJobs:
    """ASGI wrapper: answers the lifespan protocol (Django does not) by starting the
    in-process jobs at start-up and stopping them at shutdown; passes everything else on."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                start_in_process_jobs()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                stop_in_process_jobs()
                await send({"type": "lifespan.shutdown.complete"})
                return
