"""Compliance settings, each overridable in Django settings or the environment."""

from __future__ import annotations

import os

from django.conf import settings


def period_days() -> int:
    """Default look-back of a report: how far back "in the period" evidence (kill-switch use,
    policy changes, decisions received) is searched."""
    return int(getattr(settings, "WARDEN_COMPLIANCE_PERIOD_DAYS", None) or os.environ.get(
        "WARDEN_COMPLIANCE_PERIOD_DAYS") or 90)


MAX_PERIOD_DAYS = 3660
