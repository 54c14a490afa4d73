"""Detection settings, each overridable in Django settings or the environment (settings win,
so tests can use `settings.WARDEN_DETECTION_…`). docs/detection.md lists them."""

from __future__ import annotations

import os

from django.conf import settings

from controlplane.detection.engine import EngineSettings


def _setting(name: str, default):
    if hasattr(settings, name):
        return getattr(settings, name)
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, tuple):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw


def engine_settings() -> EngineSettings:
    """The detectors' knobs; WARDEN_DETECTION_WARMUP_HOURS and _WARMUP_CALLS shorten learning."""
    return EngineSettings(
        warmup_hours=_setting("WARDEN_DETECTION_WARMUP_HOURS", 72.0),
        warmup_calls=_setting("WARDEN_DETECTION_WARMUP_CALLS", 200),
    )


def chunk_size() -> int:
    """Events read per detection transaction."""
    return _setting("WARDEN_DETECTION_CHUNK", 5000)


def webhook_url() -> str:
    return _setting("WARDEN_DETECTION_WEBHOOK_URL", "")


def webhook_secret() -> str:
    return _setting("WARDEN_DETECTION_WEBHOOK_SECRET", "")


def webhook_timeout() -> float:
    return _setting("WARDEN_DETECTION_WEBHOOK_TIMEOUT", 5.0)


def alert_emails() -> tuple[str, ...]:
    return _setting("WARDEN_DETECTION_ALERT_EMAILS", ())


def min_delivery_severity() -> str:
    """Alerts below this severity stay in the console inbox only."""
    return _setting("WARDEN_DETECTION_NOTIFY_SEVERITY", "medium")


def reminder_lead_hours() -> tuple[int, ...]:
    """Reminders go out this many hours before a clock runs out (and once when it has)."""
    return tuple(int(h) for h in _setting("WARDEN_DETECTION_REMINDER_HOURS", ("72", "24", "4")))


def decision_log_lag_seconds() -> float:
    """Decision logs newer than this are left for the next run (their inserts may still commit)."""
    return _setting("WARDEN_DETECTION_DECISION_LOG_LAG", 2.0)
