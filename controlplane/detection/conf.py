"""Detection settings, declared in controlplane/settings/registry.py and read through its one
reader (Django settings win, so tests can use `settings.WARDEN_DETECTION_…`). docs/detection.md
lists them."""

from __future__ import annotations

from controlplane.detection.engine import EngineSettings
from controlplane.settings.registry import setting


def engine_settings() -> EngineSettings:
    """The detectors' knobs; WARDEN_DETECTION_WARMUP_HOURS and _WARMUP_CALLS shorten learning."""
    return EngineSettings(
        warmup_hours=float(setting("WARDEN_DETECTION_WARMUP_HOURS")),
        warmup_calls=int(setting("WARDEN_DETECTION_WARMUP_CALLS")),
    )


def chunk_size() -> int:
    """Events read per detection transaction."""
    return int(setting("WARDEN_DETECTION_CHUNK"))


def webhook_url() -> str:
    return str(setting("WARDEN_DETECTION_WEBHOOK_URL"))


def webhook_secret() -> str:
    return str(setting("WARDEN_DETECTION_WEBHOOK_SECRET"))


def webhook_timeout() -> float:
    return float(setting("WARDEN_DETECTION_WEBHOOK_TIMEOUT"))


def alert_emails() -> tuple[str, ...]:
    return tuple(setting("WARDEN_DETECTION_ALERT_EMAILS"))


def min_delivery_severity() -> str:
    """Alerts below this severity stay in the console inbox only."""
    return str(setting("WARDEN_DETECTION_NOTIFY_SEVERITY"))


def reminder_lead_hours() -> tuple[int, ...]:
    """Reminders go out this many hours before a clock runs out (and once when it has)."""
    return tuple(int(h) for h in setting("WARDEN_DETECTION_REMINDER_HOURS"))


def decision_log_lag_seconds() -> float:
    """Decision logs newer than this are left for the next run (their inserts may still commit)."""
    return float(setting("WARDEN_DETECTION_DECISION_LOG_LAG"))
