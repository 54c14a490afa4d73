"""Environment bearer tokens: how OPA authenticates to the bundle, log, status and discovery
endpoints (`services[].credentials.bearer` in OPA's configuration).

A token belongs to one environment. Lookups are cached in-process for
`TOKEN_CACHE_SECONDS`, because a sidecar fleet polls constantly and the 304 path must not
cost a query: a revoked token therefore keeps working for at most that long per process
(counted from the moment the lookup started).

A fleet shares a few tokens, so when an entry expires hundreds of requests would miss at
once and queue as many identical queries on the two database threads (whose ORM work holds
the GIL, so the event loop stalls behind them). Lookups are therefore shared: one query per
token at a time, joined by every request that misses meanwhile; and an entry used in its
last REFRESH_AHEAD_SECONDS is looked up again in the background, so a busy token never
expires in the request path. Neither lengthens how long an answer is trusted.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from controlplane.accounts.models import hash_token
from controlplane.bundles.models import Environment, EnvironmentToken
from controlplane.opa.database import run_in_db_thread

logger = logging.getLogger(__name__)

TOKEN_CACHE_SECONDS = 5.0
# A cached entry used within this long of its expiry is refreshed in the background.
REFRESH_AHEAD_SECONDS = 1.0
TOKEN_CACHE_MAX_ENTRIES = 10_000
# last_used_at is refreshed at most this often, so polling doesn't write on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)

INVALID_TOKEN = "invalid or revoked environment token"


class AuthenticationFailed(Exception):
    """401. Unknown and revoked tokens share one message, so tokens cannot be probed."""

    def __init__(self, message: str = INVALID_TOKEN) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class EnvironmentClient:
    """Who is calling: an engine holding a token of one environment."""

    token_id: str
    environment_id: str
    environment_name: str

    def environment(self) -> Environment:
        return Environment.objects.get(pk=self.environment_id)


# The clock entries expire by (tests replace it, not time.monotonic, which asyncio uses too).
_clock = time.monotonic
_cache: dict[str, tuple[float, EnvironmentClient | None]] = {}
_cache_lock = threading.Lock()
# Lookups in progress, per event loop and token hash (each loop awaits its own future).
_lookups: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Future] = {}


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer <token>` header (OPA's default scheme)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed("send an environment token as 'Authorization: Bearer <token>'")
    return token


def _cached(key_hash: str) -> tuple[bool, EnvironmentClient | None, bool]:
    """(hit, client, due): `due` when the entry should be refreshed ahead of its expiry."""
    with _cache_lock:
        entry = _cache.get(key_hash)
    now = _clock()
    if entry is None or entry[0] <= now:
        return False, None, False
    return True, entry[1], entry[0] - now < REFRESH_AHEAD_SECONDS


def _remember(key_hash: str, client: EnvironmentClient | None, looked_up_at: float) -> None:
    with _cache_lock:
        if len(_cache) >= TOKEN_CACHE_MAX_ENTRIES:
            _cache.clear()  # bounded memory even under a flood of made-up tokens
        _cache[key_hash] = (looked_up_at + TOKEN_CACHE_SECONDS, client)


def forget_cached_tokens() -> None:
    """Drop every cached lookup (tests; an operator wanting revocations to apply at once)."""
    with _cache_lock:
        _cache.clear()
    _lookups.clear()


def _lookup(key_hash: str) -> EnvironmentClient | None:
    # The answer is trusted from the moment the query starts, not from when it returns.
    looked_up_at = _clock()
    token = (
        EnvironmentToken.objects.select_related("environment")
        .filter(key_hash=key_hash, revoked_at__isnull=True)
        .first()
    )
    if token is None:
        client = None
    else:
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            EnvironmentToken.objects.filter(pk=token.pk).update(last_used_at=now)
        client = EnvironmentClient(
            token_id=str(token.pk), environment_id=str(token.environment_id), environment_name=token.environment.name
        )
    _remember(key_hash, client, looked_up_at)
    return client


def _shared_lookup(key_hash: str) -> asyncio.Future:
    """The lookup of `key_hash` in progress in this loop, or a new one."""
    loop = asyncio.get_running_loop()
    key = (loop, key_hash)
    future = _lookups.get(key)
    if future is None:
        future = asyncio.ensure_future(run_in_db_thread(_lookup, key_hash))
        _lookups[key] = future
        future.add_done_callback(lambda done: _lookups.pop(key) if _lookups.get(key) is done else None)
    return future


def _refresh_done(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        # The entry then expires as usual and the next request looks the token up itself.
        logger.warning("refreshing a cached environment token failed", exc_info=future.exception())


async def aauthenticate(authorization: str) -> EnvironmentClient:
    """The engine sending this Authorization header, or AuthenticationFailed. A cached
    token costs no query; concurrent requests with an uncached token share one."""
    key_hash = hash_token(bearer_token(authorization))
    hit, client, due = _cached(key_hash)
    if not hit:
        client = await asyncio.shield(_shared_lookup(key_hash))
    elif due and (asyncio.get_running_loop(), key_hash) not in _lookups:
        _shared_lookup(key_hash).add_done_callback(_refresh_done)
    if client is None:
        raise AuthenticationFailed()
    return client
