"""Waking long-polling engines when an environment's active bundle changes.

With REDIS_URL set, activations are published on a Redis channel per environment, so
every web process wakes its own waiters; without it (the embedded default, one process),
waiters are woken in-process. When Redis is down, activations made by other processes
cannot wake us: waits then end every DB_POLL_SECONDS so the long poll re-reads the
database, and a change is still answered within that delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import defaultdict

from django.conf import settings

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "warden:bundles:"
# Without a working Redis subscription, a held long poll re-reads the database this often.
DB_POLL_SECONDS = 1.0
# A dead Redis must cost a publish (made after a commit, inside a request) at most this.
REDIS_TIMEOUT_SECONDS = 1.0
# The subscription is made off the request path: on a saturated host a connect takes seconds.
SUBSCRIBE_TIMEOUT_SECONDS = 5.0

_waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, BundleChangeListener]]] = defaultdict(set)
_waiters_lock = threading.Lock()
# Bumped at every activation seen by this process (per environment) and at every (re)subscription
# (all environments: changes made while unsubscribed were missed), so a cached ETag can be
# trusted until its generation moves (controlplane.opa.selectors).
_generations: dict[str, int] = defaultdict(int)
_epoch = 0


def _prefix() -> str:
    # Pub/sub ignores the database number: name it, so deployments (and test runs) that share
    # a Redis server on different databases do not wake each other's long polls.
    from redis.connection import parse_url

    return f"{CHANNEL_PREFIX}{parse_url(settings.REDIS_URL).get('db', 0)}:"


def channel(environment_name: str) -> str:
    return _prefix() + environment_name


def publish(environment_name: str, etag: str) -> None:
    """Announce that `environment_name` now serves the bundle with `etag`."""
    # Waiters in this process are woken directly; other processes through Redis.
    _wake_local(environment_name)
    if settings.REDIS_URL:
        import redis

        try:
            client = redis.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
            )
            client.publish(channel(environment_name), etag)
            client.close()
        except redis.RedisError:
            # Their waits end at the timeout instead and they see the change then.
            logger.warning("could not publish bundle change for %s", environment_name, exc_info=True)


def generation(environment_name: str) -> tuple[int, int]:
    """Changes when `environment_name` may have a new active bundle as far as this process knows."""
    with _waiters_lock:
        return _epoch, _generations[environment_name]


def changes_are_pushed() -> bool:
    """True while every activation, made by any process, reaches this process as a wake-up:
    a live Redis subscription. (Without Redis, a command run in another process is not seen.)"""
    return bool(settings.REDIS_URL) and _fan_in.subscribed


def _new_epoch() -> None:
    global _epoch
    with _waiters_lock:
        _epoch += 1


def _wake_local(environment_name: str) -> None:
    with _waiters_lock:
        _generations[environment_name] += 1
        waiters = list(_waiters.get(environment_name, ()))
    by_loop: dict[asyncio.AbstractEventLoop, list[BundleChangeListener]] = defaultdict(list)
    for loop, listener in waiters:
        by_loop[loop].append(listener)
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    # One call per loop, not per waiter: a thousand held polls cost one self-pipe write (the
    # Redis fan-in runs in the loop itself, so it wakes them directly).
    for loop, listeners in by_loop.items():
        if loop is running:
            _wake_all(listeners)
        else:
            with contextlib.suppress(RuntimeError):  # the loop has closed: its waiters are gone
                loop.call_soon_threadsafe(_wake_all, listeners)


def _wake_all(listeners: list[BundleChangeListener]) -> None:
    for listener in listeners:
        listener.wake()


class _RedisFanIn:
    """One Redis subscription per process (pattern warden:bundles:<db>:*) that wakes the local
    waiters, so 500 long polls cost one Redis connection, not 500."""

    def __init__(self) -> None:
        self._task: asyncio.Task | None = None
        self._ready: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # True only while subscribed: otherwise waiters fall back to polling the database.
        self.subscribed = False

    async def ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self.subscribed and self._loop is loop and self._task is not None and not self._task.done():
            return  # the common case, once per long poll: no wait_for (a task and a timer) for it
        if self._task is None or self._task.done() or self._loop is not loop:
            self._loop = loop
            self._ready = asyncio.Event()
            self._task = loop.create_task(self._run(self._ready))
        elif not self.subscribed:
            return  # Redis is down and being retried: poll the database meanwhile, without waiting here
        try:
            await asyncio.wait_for(self._ready.wait(), 2)
        except asyncio.TimeoutError:
            logger.warning("Redis subscription for bundle changes is not ready; long polls poll the database")

    async def _run(self, ready: asyncio.Event) -> None:
        import redis.asyncio as aioredis

        while True:
            client = aioredis.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=SUBSCRIBE_TIMEOUT_SECONDS, health_check_interval=10
            )
            pubsub = client.pubsub()
            try:
                prefix = _prefix()
                await pubsub.psubscribe(prefix + "*")
                _new_epoch()
                self.subscribed = True
                ready.set()
                async for message in pubsub.listen():
                    if message.get("type") == "pmessage":
                        name = message["channel"].decode("utf-8").removeprefix(prefix)
                        _wake_local(name)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - reconnect on any Redis failure
                self.subscribed = False
                logger.warning("bundle change subscription lost; polling the database until it is back", exc_info=True)
                await asyncio.sleep(1)
            finally:
                self.subscribed = False
                _new_epoch()
                await pubsub.aclose()
                await client.aclose()


_fan_in = _RedisFanIn()


class BundleChangeListener:
    """Async context manager: `await listener.wait(timeout)` returns True when the
    environment's bundle may have changed, False when the timeout passed. Enter it before
    reading the current state, so a change between the read and the wait is not missed."""

    def __init__(self, environment_name: str):
        self.environment_name = environment_name
        self._woken = False
        self._future: asyncio.Future | None = None

    async def __aenter__(self):
        self._entry = (asyncio.get_running_loop(), self)
        with _waiters_lock:
            _waiters[self.environment_name].add(self._entry)
        if settings.REDIS_URL:
            try:
                await _fan_in.ensure_running()
            except BaseException:  # cancelled (the client went away): __aexit__ will not run
                await self.__aexit__()
                raise
        return self

    def wake(self) -> None:
        """Called in the listener's loop (_wake_local)."""
        self._woken = True
        if self._future is not None and not self._future.done():
            self._future.set_result(True)

    async def wait(self, timeout: float) -> bool:
        """True when woken (or, without a Redis subscription, after DB_POLL_SECONDS: the
        caller must then re-read the database); False when `timeout` passed."""
        if self._woken:
            return True
        polling = bool(settings.REDIS_URL) and not _fan_in.subscribed
        # A future and one timer: at the end of a wait, no task to cancel and no TimeoutError
        # to raise (asyncio.wait_for costs both), since a fleet's waits may end together.
        loop = asyncio.get_running_loop()
        self._future = future = loop.create_future()
        timer = loop.call_later(min(timeout, DB_POLL_SECONDS) if polling else timeout, _time_out, future)
        try:
            if await future:
                return True
            return polling and timeout > DB_POLL_SECONDS
        finally:
            timer.cancel()
            self._future = None

    def rearm(self) -> None:
        """Wait for the next activation (after handling the one that woke `wait`)."""
        self._woken = False

    async def __aexit__(self, *exc_info):
        with _waiters_lock:
            _waiters[self.environment_name].discard(self._entry)
            if not _waiters[self.environment_name]:
                _waiters.pop(self.environment_name, None)
        # The entry holds the listener: without this, each ended poll left a cycle that only a
        # collection walking every held poll frees (tests/opa/test_long_poll_garbage.py).
        self._entry = None


def _time_out(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(False)
