"""A small, bounded pool of threads for the ORM queries of the async OPA views.

Under ASGI, Django gives every request its own thread for sync code, and a query made there
opens a database connection that lives as long as the request. Five hundred long polls
would then hold five hundred PostgreSQL connections. These views instead send their few
queries to `DB_THREADS` threads, each keeping one connection: a bounded number whatever
the number of waiting engines.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.db import DatabaseError, close_old_connections, connections

DB_THREADS = 2
# As often as Django would at a request's start, drop connections past CONN_MAX_AGE or broken.
CONNECTION_CHECK_SECONDS = 10.0

_local = threading.local()
_executor_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
# The connection objects the pool's threads opened, so they can be closed from outside.
_opened: set = set()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="warden-opa-db")
        return _executor


def _call(func, args, kwargs):
    now = time.monotonic()
    if now - getattr(_local, "checked_at", 0.0) > CONNECTION_CHECK_SECONDS:
        close_old_connections()
        _local.checked_at = now
    try:
        return func(*args, **kwargs)
    except DatabaseError:
        close_old_connections()  # a broken connection is replaced at the next call, not kept
        raise
    finally:
        opened = connections.all(initialized_only=True)
        with _executor_lock:
            _opened.update(opened)


async def run_in_db_thread(func, /, *args, **kwargs):
    """Run the sync `func(*args, **kwargs)` (ORM code) in the pool and await its result."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), functools.partial(_call, func, args, kwargs))


def close_db_connections() -> None:
    """Stop the pool's threads and close their connections (tests and shutdown: PostgreSQL
    will not drop a database that still has connections). The pool restarts on next use."""
    global _executor
    with _executor_lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True)
    with _executor_lock:
        opened = list(_opened)
        _opened.clear()
    for connection in opened:
        # Its thread has ended; closing from here is safe once sharing is declared.
        connection.inc_thread_sharing()
        try:
            connection.close()
        finally:
            connection.dec_thread_sharing()
