"""The registry of evidence collectors: the decorator each collector module registers with,
and the call that runs one. A module of its own so that the collector modules import it
rather than their package, which imports them (no import cycle)."""

from __future__ import annotations

from collections.abc import Callable

from django.utils import timezone

from controlplane.compliance.evidence import Evidence

COLLECTORS: dict[str, Callable] = {}


def collector(kind: str):
    def register(func):
        COLLECTORS[kind] = func
        return func

    return register


def collect(kind: str, context) -> Evidence:
    """Run one collector and stamp the evidence with the time it was collected."""
    evidence = COLLECTORS[kind](context)
    evidence.collected_at = timezone.now().isoformat()
    return evidence
