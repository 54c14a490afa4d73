"""Waking agents that long-poll for a decision.

A state change is published on the Redis channel `warden:approvals:<id>` after commit; a
held wait request subscribes to it before reading the state, so no change is missed. Without
Redis (the embedded default, one process) waiters are woken in-process; if Redis fails, a
wait re-reads the database every FALLBACK_POLL_SECONDS instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from django.conf import settings

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "warden:approvals:"
FALLBACK_POLL_SECONDS = 1.0
REDIS_TIMEOUT_SECONDS = 1.0

_local_events: dict[str, set[threading.Event]] = defaultdict(set)
_lock = threading.Lock()


def publish(request_id: str) -> None:
    """Announce that request `request_id` changed state."""
    with _lock:
        for event in _local_events.get(request_id, ()):
            event.set()
    if settings.REDIS_URL:
        import redis

        try:
            client = redis.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
            )
            client.publish(CHANNEL_PREFIX + request_id, b"changed")
            client.close()
        except redis.RedisError:
            logger.warning("could not publish the change of approval %s; waiters re-read the database", request_id)


def hold_until_changed(request_id: str, read: Callable[[], str | None], current: str, timeout: float) -> None:
    """Return when `read()` (the request's state) differs from `current`, or after
    `timeout` seconds. Subscribes before the first read."""
    deadline = time.monotonic() + timeout
    event = threading.Event()
    with _lock:
        _local_events[request_id].add(event)
    pubsub = client = None
    try:
        if settings.REDIS_URL:
            import redis

            try:
                client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL_PREFIX + request_id)
            except redis.RedisError:
                pubsub = None
        while read() == current:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if pubsub is not None:
                try:
                    pubsub.get_message(timeout=min(remaining, FALLBACK_POLL_SECONDS * 5))
                except Exception:  # noqa: BLE001 - Redis lost: fall back to re-reading the database
                    pubsub = None
            else:
                event.wait(min(remaining, FALLBACK_POLL_SECONDS))
                event.clear()
    finally:
        with _lock:
            _local_events[request_id].discard(event)
            if not _local_events[request_id]:
                _local_events.pop(request_id, None)
        if pubsub is not None:
            pubsub.close()
        if client is not None:
            client.close()
