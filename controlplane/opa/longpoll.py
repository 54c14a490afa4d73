"""OPA's long polling: hold a bundle request until the bundle changes or the wait ends.

OPA sends `Prefer: modes=snapshot,delta;wait=N` and, on a 304 or a long-poll 200, asks
again at once: answering a long poll with an immediate 304 would make OPA busy-loop, so
the request is held for most of N seconds when nothing changes.

Each hold ends at a random moment in the last EARLY_END_FRACTION of its wait. A change
wakes a whole fleet at once and every engine asks again at once; with exact waits they
would then all expire in the same instant, every N seconds, and a web process would answer
its thousand 304s in one burst. OPA treats an early 304 like any other (it keeps the ETag
and long polling, download.go, and asks again at once), so the jitter spreads the ends
over 0.4 N seconds, at the cost of 25% more polls on average (at most 67%). A fifth (0.2 N)
left the first ends of a fleet that connected within a second two seconds apart at N = 10:
1,000 sidecars' 304s were late by 33 to 54 ms p99 in bench/sidecar_fleet.py, 18 to 25 ms
with two fifths (docs/scale.md).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from django.utils.cache import parse_etags

from controlplane.bundles.notify import BundleChangeListener
from controlplane.metrics.instruments import LONG_POLLS_HELD

# Longer holds gain nothing and outlive the idle timeouts of most proxies.
MAX_WAIT_SECONDS = 300
# A hold ends between (1 - EARLY_END_FRACTION) * wait and wait seconds after it began.
EARLY_END_FRACTION = 0.4
_WAIT = re.compile(r"(?:^|[;,\s])wait\s*=\s*(\d{1,9})\s*(?:$|[;,\s])", re.IGNORECASE)


class HasETag(Protocol):
    etag: str


T = TypeVar("T", bound=HasETag)


def long_poll_wait(prefer: str | None) -> int | None:
    """Seconds to hold from `Prefer: modes=snapshot,delta;wait=N`, or None when the
    request is not a long poll (OPA's long_polling_timeout_seconds is at least 1)."""
    if not prefer:
        return None
    match = _WAIT.search(prefer)
    if not match:
        return None
    wait = int(match.group(1))
    return min(wait, MAX_WAIT_SECONDS) if wait >= 1 else None


def hold_seconds(wait: float) -> float:
    """How long to hold a long poll that asked to wait `wait` seconds (see the module doc)."""
    return wait * (1 - EARLY_END_FRACTION * random.random())


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match as OPA sends it (the exact ETag we gave) or any list, `*`, or weak tag."""
    if not if_none_match:
        return False
    if if_none_match == etag:  # OPA's case, checked several times per poll: skip the parsing
        return True
    tags = parse_etags(if_none_match)
    if "*" in tags:
        return True
    strong = etag.removeprefix("W/")
    return any(tag.removeprefix("W/") == strong for tag in tags)


async def hold_until_changed(
    environment_name: str,
    if_none_match: str | None,
    wait: float,
    read: Callable[[], Awaitable[T | None]],
) -> T | None:
    """The state `read()` returns once it has an ETag other than `if_none_match`, or the
    latest state when the hold ends first (hold_seconds(wait): at most `wait`). Woken by
    bundle activations of the environment (notify.publish), so a change is answered within
    milliseconds; when Redis is down, by a database re-read every notify.DB_POLL_SECONDS."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + hold_seconds(wait)
    with LONG_POLLS_HELD.track_inprogress():  # GET /metrics: warden_opa_long_polls_held
        return await _hold(environment_name, if_none_match, deadline, read, loop)


async def _hold(environment_name, if_none_match, deadline, read, loop):
    # Listen before reading, so an activation between the read and the wait still wakes us.
    async with BundleChangeListener(environment_name) as listener:
        state = await read()
        while state is None or etag_matches(if_none_match, state.etag):
            remaining = deadline - loop.time()
            if remaining <= 0 or not await listener.wait(remaining):
                break
            listener.rearm()
            state = await read()
    return state
