"""The audit pipeline's settings, declared in controlplane/settings/registry.py and read through
its one reader: Django settings win over the environment, so tests can use `settings.WARDEN_AUDIT_…`.
"""

from __future__ import annotations

import os

from django.conf import settings

from controlplane.settings.registry import setting


def max_batch_records() -> int:
    return setting("WARDEN_AUDIT_MAX_BATCH_RECORDS")


def max_batch_bytes() -> int:
    """Cap on a batch body, after gzip inflation (and on the compressed body as sent)."""
    return setting("WARDEN_AUDIT_MAX_BATCH_BYTES")


def request_max_skew() -> int:
    """Seconds an upload's X-Warden-Timestamp may differ from the control plane's clock."""
    return setting("WARDEN_AUDIT_MAX_CLOCK_SKEW")


def sensitive_keys() -> frozenset[str]:
    """Object keys whose values are masked wherever they appear in a payload (case-insensitive)."""
    return frozenset(key.lower() for key in setting("WARDEN_AUDIT_SENSITIVE_KEYS"))


def retention_days() -> int:
    """Default retention. 190 days: the EU AI Act (Art. 19, 26) asks for at least six months of logs,
    and six calendar months can be 184 days."""
    return setting("WARDEN_AUDIT_RETENTION_DAYS")


def min_retention_days() -> int:
    return setting("WARDEN_AUDIT_MIN_RETENTION_DAYS")


def verify_queue() -> str:
    """The Celery queue of verification tasks (a dedicated queue lets audit workers scale apart)."""
    return setting("WARDEN_AUDIT_QUEUE")


def checkpoint_max_events() -> int:
    return setting("WARDEN_AUDIT_CHECKPOINT_MAX_EVENTS")


def stale_batch_seconds() -> int:
    """A batch still pending this long after its last attempt started is enqueued again."""
    return setting("WARDEN_AUDIT_STALE_BATCH_SECONDS")


def max_batch_attempts() -> int:
    """Verification runs a batch may start before it is parked (and an alert logged)."""
    return setting("WARDEN_AUDIT_MAX_BATCH_ATTEMPTS")


def witness_path() -> str:
    """The append-only file every checkpoint head and verified batch is also written to.

    Outside the database on purpose: put it on a path the database's roles cannot reach
    (another disk or host mount, `chattr +a`), so cutting the log's tail in the database
    leaves a trace there.
    """
    configured = setting("WARDEN_AUDIT_WITNESS_PATH")
    return configured or os.path.join(str(settings.VAR_DIR), "audit-witness.jsonl")


def pinned_checkpoint_keys() -> tuple[str, ...]:
    """The checkpoint public keys (base64 or PEM) verification trusts; two during a rotation.

    Empty: verification falls back to the keys stored in the database and says so.
    """
    return setting("WARDEN_AUDIT_CHECKPOINT_PUBLIC_KEYS")


def originals_roles() -> tuple[str, ...]:
    """Roles allowed to export the original (unmasked) signed records; each export is logged."""
    return setting("WARDEN_AUDIT_ORIGINALS_ROLES")
