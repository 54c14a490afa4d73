"""Evidence collectors: one small function per evidence kind, over the platform's real state.

Each takes a `ReportContext` (the environment, the period and facts shared between
collectors, computed once) and returns an `Evidence`. Collectors aggregate in SQL (counts,
group-bys) and never iterate audit events in Python, so a report over millions of events
stays within seconds.
"""

from __future__ import annotations

from collections.abc import Callable

from controlplane.compliance.evidence import Evidence

COLLECTORS: dict[str, Callable] = {}


def collector(kind: str):
    def register(func):
        COLLECTORS[kind] = func
        return func

    return register


def collect(kind: str, context) -> Evidence:
    """Run one collector and stamp the evidence with the time it was collected."""
    from django.utils import timezone

    evidence = COLLECTORS[kind](context)
    evidence.collected_at = timezone.now().isoformat()
    return evidence


# Importing the modules registers their collectors.
from controlplane.compliance.collectors import access, logs, platform, policy  # noqa: F401,E402

EVIDENCE_KINDS = frozenset(COLLECTORS) | {"manual"}
