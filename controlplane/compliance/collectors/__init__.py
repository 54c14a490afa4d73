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
    return COLLECTORS[kind](context)


# Importing the modules registers their collectors.
from controlplane.compliance.collectors import logs, platform, policy  # noqa: F401

EVIDENCE_KINDS = frozenset(COLLECTORS) | {"manual"}
