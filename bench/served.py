"""What the benches that drive one web process share (bench/scale.py, bench/sidecar_fleet.py):
the child processes' environment, migrations and a seed script run in a child process, and
uvicorn serving the ASGI app (bench/bundle_service.py's SERVER) on a free port.

Django is imported only in the children, so the load generator stays lean.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from bundle_service import SERVER, free_port, stop, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def bench_env(*, redis: bool = False) -> dict[str, str]:
    """The children's environment. PostgreSQL is required (a database of its own: the benches
    insert many rows), and Redis too when `redis`."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="controlplane.settings", PYTHONPATH=str(ROOT),
               WARDEN_LOG_LEVEL="WARNING")
    if not env.get("DATABASE_URL", "").startswith("postgres") or (redis and not env.get("REDIS_URL")):
        raise SystemExit("set DATABASE_URL to a PostgreSQL database of its own" + (" and REDIS_URL" if redis else ""))
    return env


def migrate_and_seed(env: dict[str, str], seed_script: str) -> dict:
    """Migrate, then run `seed_script` with a fresh tag as its argument; returns the JSON
    object it prints last."""
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300)
    seeded = subprocess.run([PYTHON, "-c", seed_script, uuid.uuid4().hex[:6]], cwd=ROOT, env=env, check=True,
                            capture_output=True, text=True, timeout=300)
    return json.loads(seeded.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def serving(env: dict[str, str], port: int | None = None) -> Iterator[tuple[int, subprocess.Popen]]:
    """uvicorn (one process) on `port` or a free one, as (port, process); stopped on leaving."""
    port = port or free_port()
    server = subprocess.Popen([PYTHON, "-c", SERVER, str(port)], cwd=ROOT, env=env)
    try:
        yield port, server
    finally:
        stop(server)


async def wait_up(port: int, server: subprocess.Popen) -> None:
    """wait_until_up, for up to 5 minutes: a loaded machine imports Django slowly."""
    for _ in range(10):
        try:
            return await wait_until_up(port, server)
        except SystemExit:
            if server.poll() is not None:
                raise
    raise SystemExit("the server did not start within 5 minutes")
