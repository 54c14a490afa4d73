"""Reads behind the OPA endpoints and the management API.

The bundle endpoint's hot path is a conditional GET answered 304: it is served from a
per-process cache of each environment's active ETag. While activations are pushed to this
process (notify.changes_are_pushed: a live Redis subscription) an entry
stays valid until the environment's notify.generation moves (or PUSHED_ACTIVE_BUNDLE_TTL
passes), so a held long poll costs no query until something changes; otherwise it is re-read
after `ACTIVE_BUNDLE_TTL` seconds. An archive's
bytes are identified by its ETag (a revision activated again is re-stamped with a new build
time, so new bytes), so archives are cached by (bundle id, ETag) with no expiry, as their
members (controlplane.bundles.storage.ArchiveCache).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import BooleanField, Case, F, Q, QuerySet, Value, When
from django.utils import timezone

from controlplane.bundles import notify, storage
from controlplane.bundles.models import Bundle, BundlePart, Environment
from controlplane.opa.models import DecisionLog, OPAInstance

# A plain poller may see the previous ETag for this long after an activation; long polls
# always read the database when they start and when they are woken.
ACTIVE_BUNDLE_TTL = 1.0
# While activations are pushed, an entry is still re-read this often: a publish lost to a
# Redis hiccup then delays a change by at most this much.
PUSHED_ACTIVE_BUNDLE_TTL = 30.0
ARCHIVE_CACHE_ENTRIES = 32
ARCHIVE_CACHE_BYTES = 32 * 1024 * 1024
# OPA reports status at every bundle poll (at least every 120 s by default), so an instance
# silent for this long has stopped or lost its way to Warden.
STALE_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class ActiveBundle:
    bundle_id: str
    etag: str
    revision: str


# (read at, notify.generation when the read started, state)
_active: dict[str, tuple[float, tuple[int, int], ActiveBundle | None]] = {}
# At 100,000 agents a registry snapshot is about 9 MB, nearly all of it shared with the
# combined bundle and with the versions before it: the cache holds those bytes once.
_archives = storage.ArchiveCache(max_entries=ARCHIVE_CACHE_ENTRIES, max_bytes=ARCHIVE_CACHE_BYTES)
_lock = threading.Lock()


def active_bundle(environment_name: str, part: str = "") -> ActiveBundle | None:
    """The environment's active bundle, or its `part` ("policy" or "registry", see
    controlplane.bundles.parts), read from the database (and remembered). A part's
    bundle_id is "part:<id>"."""
    # Taken before the read: an activation during it makes the entry stale at once.
    generation = notify.generation(environment_name)
    row = (
        Environment.objects.filter(name=environment_name)
        .values_list("active_bundle_id", "active_bundle__etag", "active_bundle__revision")
        .first()
    )
    state = ActiveBundle(str(row[0]), row[1], row[2]) if row and row[0] else None
    if state is not None and part:
        found = BundlePart.objects.filter(bundle_id=row[0], kind=part).values_list("id", "etag", "revision").first()
        state = ActiveBundle(f"part:{found[0]}", found[1], found[2]) if found else None
    with _lock:
        _active[_cache_key(environment_name, part)] = (time.monotonic(), generation, state)
    return state


def _cache_key(environment_name: str, part: str) -> str:
    return f"{environment_name}/{part}" if part else environment_name


def cached_active_bundle(environment_name: str, part: str = "") -> tuple[bool, ActiveBundle | None]:
    """(hit, state) from the per-process cache, without touching the database."""
    with _lock:
        entry = _active.get(_cache_key(environment_name, part))
    if entry is None:
        return False, None
    read_at, generation, state = entry
    if generation != notify.generation(environment_name):
        return False, None
    ttl = PUSHED_ACTIVE_BUNDLE_TTL if notify.changes_are_pushed() else ACTIVE_BUNDLE_TTL
    if time.monotonic() - read_at > ttl:
        return False, None
    return True, state


def cached_bundle_members(bundle_id: str, etag: str) -> tuple[bytes, ...] | None:
    """The archive of `bundle_members`, when this process holds it (no query)."""
    return _archives.get((bundle_id, etag))


def _row(bundle_id: str) -> tuple[type[Bundle] | type[BundlePart], str]:
    return (BundlePart, bundle_id[5:]) if bundle_id.startswith("part:") else (Bundle, bundle_id)


def bundle_members(bundle_id: str, etag: str) -> tuple[bytes, ...]:
    """The tar.gz of a bundle with this ETag, as its gzip members in order (joined, they are
    the archive): read once per process, and only the members no cached archive holds."""
    cached = _archives.get((bundle_id, etag))
    if cached is not None:
        return cached
    members, whole, current_etag = storage.members_of(*_row(bundle_id))
    return _archives.load((bundle_id, current_etag), members, whole)


def bundle_archive(bundle_id: str, etag: str) -> bytes:
    """`bundle_members` joined, for readers of its files (a copy: served, it is never joined)."""
    return b"".join(bundle_members(bundle_id, etag))


def forget_cached_bundles() -> None:
    with _lock:
        _active.clear()
    _archives.clear()


def opa_instances(*, now=None) -> QuerySet[OPAInstance]:
    """Instances annotated with `is_current` (runs the environment's active revision; null
    when the environment has no active bundle) and `is_stale` (no status for STALE_AFTER)."""
    now = now or timezone.now()
    return OPAInstance.objects.select_related("environment", "environment__active_bundle").annotate(
        environment_revision=F("environment__active_bundle__revision"),
        is_current=Case(
            When(environment__active_bundle__isnull=True, then=Value(None)),
            When(active_revision=F("environment__active_bundle__revision"), then=Value(True)),
            default=Value(False),
            output_field=BooleanField(null=True),
        ),
        is_stale=Case(
            When(Q(last_seen__lt=now - STALE_AFTER), then=Value(True)),
            default=Value(False),
            output_field=BooleanField(),
        ),
    )


def decision_logs() -> QuerySet[DecisionLog]:
    return DecisionLog.objects.select_related("environment")
