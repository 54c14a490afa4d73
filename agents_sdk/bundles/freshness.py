"""Bundle freshness: refuse replayed old bundles, and optionally fail closed on old ones.

A suspension reaches an agent as a new bundle. An attacker (or a misbehaving proxy or
cache) that keeps serving the agent an older signed bundle would undo it: the old
bundle still verifies. So the control plane puts the time it signed each archive in
the signed manifest, at ``metadata.warden.built_at`` (RFC 3339, UTC), and engines:

1. **never go back in time**: a bundle whose ``built_at`` is older than the active
   one's is refused (``StaleBundleError``) and the active bundle stays. Once a bundle
   with a ``built_at`` is active, a bundle without one is refused too (the old format
   is a downgrade path). The persisted bundle is loaded first at start, so this holds
   across restarts as long as the persistence directory survives;
2. **optionally expire**: with ``max_age`` (seconds), a bundle older than that is
   refused at download and, once active, makes every decision a fail-closed deny
   (``stale-bundle``) until a fresher one arrives. This bounds how long an agent that
   is cut off from the control plane (or fed only replays) keeps acting on an old
   policy, at the price of an outage when the control plane is unreachable longer
   than ``max_age``. It needs the control plane to re-sign the active bundle more often
   than ``max_age``. Off by default (see docs/sdk.md, "Stale and replayed bundles").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from agents_sdk.bundles.format import BundleError

__all__ = ["BUILT_AT_FIELD", "StaleBundleError", "age_problem", "built_at", "check_newer"]

BUILT_AT_FIELD = "metadata.warden.built_at"
"""Where the signed manifest carries the time the control plane signed the archive."""


class StaleBundleError(BundleError):
    """A bundle is older than the active one (a replay), or older than the maximum age."""


def built_at(manifest: Mapping[str, Any]) -> datetime | None:
    """The manifest's ``metadata.warden.built_at`` as an aware datetime, or None when absent.

    Raises BundleError when the field is there but is not an RFC 3339 time with a zone."""
    metadata = manifest.get("metadata")
    warden = metadata.get("warden") if isinstance(metadata, Mapping) else None
    value = warden.get("built_at") if isinstance(warden, Mapping) else None
    if value is None:
        return None
    if not isinstance(value, str) or "T" not in value:
        raise BundleError(f"bundle manifest {BUILT_AT_FIELD} must be an RFC 3339 time, not {value!r:.60}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BundleError(f"bundle manifest {BUILT_AT_FIELD} {value!r:.60} is not an RFC 3339 time") from exc
    if moment.tzinfo is None:
        raise BundleError(f"bundle manifest {BUILT_AT_FIELD} {value!r:.60} has no time zone; use Z or an offset")
    return moment.astimezone(UTC)


def check_newer(candidate: Mapping[str, Any], active: Mapping[str, Any] | None, *, revision: str = "") -> None:
    """Raise StaleBundleError unless the manifest ``candidate`` may replace ``active``'s."""
    if active is None:
        return
    held = built_at(active)
    if held is None:
        return  # the active bundle predates signed times: nothing to compare with
    offered = built_at(candidate)
    if offered is None:
        raise StaleBundleError(
            f"bundle revision {revision!r} has no {BUILT_AT_FIELD} but the active bundle was built at "
            f"{held.isoformat()}; refusing a possible replay of an old bundle"
        )
    if offered < held:
        raise StaleBundleError(
            f"bundle revision {revision!r} was built at {offered.isoformat()}, before the active bundle "
            f"({held.isoformat()}); refusing a replayed old bundle"
        )


def age_problem(manifest: Mapping[str, Any] | None, max_age: float | None, *, now: datetime | None = None) -> str | None:
    """None if a bundle with ``manifest`` is young enough, else why not (``max_age`` in seconds)."""
    if max_age is None or manifest is None:
        return None
    try:
        moment = built_at(manifest)
    except BundleError as exc:
        return exc.message
    if moment is None:
        return f"the bundle has no {BUILT_AT_FIELD}, so its age cannot be checked against the {max_age:g} s maximum"
    age = ((now or datetime.now(UTC)) - moment).total_seconds()
    if age > max_age:
        return (
            f"the bundle was built at {moment.isoformat()}, {age:.0f} s ago, over the maximum bundle age of "
            f"{max_age:g} s; the control plane has not delivered a fresher one"
        )
    return None
