"""Environment bearer tokens: how OPA authenticates to the bundle, log, status and discovery
endpoints (`services[].credentials.bearer` in OPA's configuration).

A token belongs to one environment. Lookups are cached in-process for
`TOKEN_CACHE_SECONDS`, because a sidecar fleet polls constantly and the 304 path must not
cost a query: a revoked token therefore keeps working for at most that long per process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from controlplane.accounts.models import hash_token
from controlplane.bundles.models import Environment, EnvironmentToken
from controlplane.opa.database import run_in_db_thread

TOKEN_CACHE_SECONDS = 5.0
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


_cache: dict[str, tuple[float, EnvironmentClient | None]] = {}
_cache_lock = threading.Lock()


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer <token>` header (OPA's default scheme)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed("send an environment token as 'Authorization: Bearer <token>'")
    return token


def _cached(key_hash: str) -> tuple[bool, EnvironmentClient | None]:
    with _cache_lock:
        entry = _cache.get(key_hash)
    if entry is None or entry[0] < time.monotonic():
        return False, None
    return True, entry[1]


def _remember(key_hash: str, client: EnvironmentClient | None) -> None:
    with _cache_lock:
        if len(_cache) >= TOKEN_CACHE_MAX_ENTRIES:
            _cache.clear()  # bounded memory even under a flood of made-up tokens
        _cache[key_hash] = (time.monotonic() + TOKEN_CACHE_SECONDS, client)


def forget_cached_tokens() -> None:
    """Drop every cached lookup (tests; an operator wanting revocations to apply at once)."""
    with _cache_lock:
        _cache.clear()


def _lookup(key_hash: str) -> EnvironmentClient | None:
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
    _remember(key_hash, client)
    return client


async def aauthenticate(authorization: str) -> EnvironmentClient:
    """The engine sending this Authorization header, or AuthenticationFailed. A cached
    token costs no query."""
    key_hash = hash_token(bearer_token(authorization))
    hit, client = _cached(key_hash)
    if not hit:
        client = await run_in_db_thread(_lookup, key_hash)
    if client is None:
        raise AuthenticationFailed()
    return client
