"""Give each pytest-xdist worker its own Redis database and var directory.

Loaded with `-p tests.xdist_env` (pyproject addopts), i.e. before pytest-django reads the
settings: Celery brokers, caches, long-poll channels and key files must not be shared by
workers that each have their own test database (pytest-django suffixes that one itself).
"""

import os
from urllib.parse import urlsplit, urlunsplit

_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker.startswith("gw"):
    index = int(_worker[2:])
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        parts = urlsplit(redis_url)
        base = int(parts.path.strip("/") or 0)
        # Redis has 16 databases; the run's own number stays free for its main process.
        os.environ["REDIS_URL"] = urlunsplit(parts._replace(path=f"/{(base + 1 + index) % 16}"))
    var_dir = os.environ.get("WARDEN_VAR_DIR") or os.path.join(os.path.dirname(os.path.dirname(__file__)), "var")
    os.environ["WARDEN_VAR_DIR"] = os.path.join(var_dir, f"xdist-{_worker}")
