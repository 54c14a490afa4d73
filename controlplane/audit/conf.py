"""The audit pipeline's settings, each overridable in Django settings or the environment.

Settings win over the environment, so tests can use `settings.WARDEN_AUDIT_…`.
"""

from __future__ import annotations

import os

from django.conf import settings

DEFAULT_SENSITIVE_KEYS = (
    "password", "passwd", "secret", "token", "api_key", "apikey", "access_token", "refresh_token",
    "authorization", "cookie", "card_number", "cvv", "ssn", "private_key",
)


def _setting(name: str, default):
    if hasattr(settings, name):
        return getattr(settings, name)
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, tuple):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw


def max_batch_records() -> int:
    return _setting("WARDEN_AUDIT_MAX_BATCH_RECORDS", 10_000)


def max_batch_bytes() -> int:
    """Cap on a batch body, after gzip inflation (and on the compressed body as sent)."""
    return _setting("WARDEN_AUDIT_MAX_BATCH_BYTES", 16 * 1024 * 1024)


def request_max_skew() -> int:
    """Seconds an upload's X-Warden-Timestamp may differ from the control plane's clock."""
    return _setting("WARDEN_AUDIT_MAX_CLOCK_SKEW", 300)


def sensitive_keys() -> frozenset[str]:
    """Object keys whose values are masked wherever they appear in a payload (case-insensitive)."""
    return frozenset(key.lower() for key in _setting("WARDEN_AUDIT_SENSITIVE_KEYS", DEFAULT_SENSITIVE_KEYS))


def retention_days() -> int:
    """Default retention. 183 days: the EU AI Act (Art. 19, 26) asks for at least six months of logs."""
    return _setting("WARDEN_AUDIT_RETENTION_DAYS", 183)


def min_retention_days() -> int:
    return _setting("WARDEN_AUDIT_MIN_RETENTION_DAYS", 183)


def verify_queue() -> str:
    """The Celery queue of verification tasks (a dedicated queue lets audit workers scale apart)."""
    return _setting("WARDEN_AUDIT_QUEUE", "celery")


def checkpoint_max_events() -> int:
    return _setting("WARDEN_AUDIT_CHECKPOINT_MAX_EVENTS", 100_000)


def stale_batch_seconds() -> int:
    """A batch still pending this long after its last attempt started is enqueued again."""
    return _setting("WARDEN_AUDIT_STALE_BATCH_SECONDS", 300)
