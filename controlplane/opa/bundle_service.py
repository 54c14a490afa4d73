"""The Bundle Service API's answers, independent of how the request arrived.

Both the Django views (views.py) and the ASGI fast path (asgi.py) call `bundle_reply` and
`discovery_reply`, so the protocol lives in one place: bearer token → environment,
ETag / If-None-Match → 304, long polling, 404 when nothing is active.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from agents_sdk.bundles.format import LONG_POLL_CONTENT_TYPE
from controlplane.bundles import notify
from controlplane.opa import deltas, selectors
from controlplane.opa.authentication import AuthenticationFailed, aauthenticate
from controlplane.opa.database import run_in_db_thread
from controlplane.opa.discovery import discovery_bundle
from controlplane.opa.longpoll import etag_matches, hold_until_changed, long_poll_wait

# A 200 with LONG_POLL_CONTENT_TYPE (the SDK owns the constant) keeps OPA long polling.
BUNDLE_CONTENT_TYPE = "application/gzip"
# "" is the combined bundle; the others are controlplane.bundles.parts.
BUNDLE_PARTS = frozenset({"", "policy", "registry"})


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    # A snapshot is its archive's gzip members (controlplane.opa.selectors.bundle_members),
    # written one after the other: served, an archive is never joined into one copy.
    body: bytes | tuple[bytes, ...] = b""

    @property
    def chunks(self) -> tuple[bytes, ...]:
        return (self.body,) if isinstance(self.body, bytes) else self.body

    @property
    def content_length(self) -> int:
        return sum(map(len, self.chunks))


def error_reply(status: int, message: str, **headers: str) -> Reply:
    return Reply(status, {"Content-Type": "application/json", **headers}, json.dumps({"detail": message}).encode())


def unauthorized(exc: AuthenticationFailed) -> Reply:
    return error_reply(401, exc.message, **{"WWW-Authenticate": 'Bearer realm="warden"'})


def _bundle_or_304(state, if_none_match: str | None, archive: bytes | tuple[bytes, ...] | None, *,
                   long_polling: bool) -> Reply:
    if etag_matches(if_none_match, state.etag):
        return Reply(304, {"ETag": state.etag})
    # The body is itself a tar.gz: never add Content-Encoding, or OPA's HTTP client would
    # strip the gzip layer and then fail to read the archive.
    content_type = LONG_POLL_CONTENT_TYPE if long_polling else BUNDLE_CONTENT_TYPE
    return Reply(200, {"Content-Type": content_type, "ETag": state.etag}, archive)


async def _authorized(environment: str, authorization: str) -> Reply | None:
    try:
        client = await aauthenticate(authorization)
    except AuthenticationFailed as exc:
        return unauthorized(exc)
    if client.environment_name != environment:
        return error_reply(403, f"this token is not valid for environment {environment!r}")
    return None


# Reads in progress, so the thousand polls one activation wakes share one query.
_reads: dict[tuple, asyncio.Future] = {}


async def _shared(key: tuple, func, *args):
    """`await run_in_db_thread(func, *args)`, joined by any caller asking for the same key meanwhile."""
    key = (asyncio.get_running_loop(), *key)
    future = _reads.get(key)
    if future is None:
        future = asyncio.ensure_future(run_in_db_thread(func, *args))
        _reads[key] = future
        future.add_done_callback(lambda _: _reads.pop(key, None))
    return await asyncio.shield(future)


async def _active_bundle(environment: str, *, fresh: bool, part: str = ""):
    if not fresh:
        hit, state = selectors.cached_active_bundle(environment, part)
        if hit:
            return state
    return await _shared(("active", environment, part, notify.generation(environment)), selectors.active_bundle,
                         environment, part)


def _read_for_long_poll(environment: str, part: str):
    # While activations are pushed to this process, the cached ETag is exact (selectors):
    # a held poll then costs no query until something changes. Otherwise read the database.
    return lambda: _active_bundle(environment, fresh=not notify.changes_are_pushed(), part=part)


async def bundle_reply(
    environment: str, *, authorization: str, if_none_match: str | None, prefer: str | None, part: str = "",
    query_string: str = "",
) -> Reply:
    """GET bundles/<environment> (or bundles/<environment>/<part>, the split layout of
    controlplane.bundles.parts) as OPA's bundle downloader sends it; the registry part as a
    delta bundle to a downloader that asks for one (controlplane.opa.deltas)."""
    refused = await _authorized(environment, authorization)
    if refused:
        return refused
    wait = long_poll_wait(prefer)
    if wait is None:
        # A plain poll may be answered from the ETag cache (exact while activations are pushed,
        # else at most ACTIVE_BUNDLE_TTL old: see selectors).
        state = await _active_bundle(environment, fresh=False, part=part)
    else:
        state = await hold_until_changed(environment, if_none_match, wait, _read_for_long_poll(environment, part))
    if state is None:
        return error_reply(404, f"environment {environment!r} has no active bundle yet: publish or promote one")
    archive = None
    if not etag_matches(if_none_match, state.etag):
        if part == "registry" and if_none_match and deltas.wants_delta(prefer, query_string):
            # The delta first: when the builds recorded what changed, the snapshot is never read.
            from_etag = if_none_match.strip()
            archive = await _shared(("delta", from_etag, state.etag), deltas.delta_archive,
                                    environment, from_etag, state.bundle_id, state.etag)
        if archive is None:
            archive = selectors.cached_bundle_members(state.bundle_id, state.etag)
        if archive is None:
            archive = await _shared(("archive", state.bundle_id, state.etag), selectors.bundle_members,
                                    state.bundle_id, state.etag)
    return _bundle_or_304(state, if_none_match, archive, long_polling=wait is not None)


async def discovery_reply(
    environment: str, *, authorization: str, if_none_match: str | None, prefer: str | None
) -> Reply:
    """GET discovery/<environment>: the same downloader protocol, for the discovery bundle."""
    refused = await _authorized(environment, authorization)
    if refused:
        return refused
    wait = long_poll_wait(prefer)

    async def read():
        return await run_in_db_thread(discovery_bundle, environment)

    state = await (read() if wait is None else hold_until_changed(environment, if_none_match, wait, read))
    if state is None:
        return error_reply(404, f"no environment {environment!r}")
    return _bundle_or_304(state, if_none_match, state.archive, long_polling=wait is not None)
