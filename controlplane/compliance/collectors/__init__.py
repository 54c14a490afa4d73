"""Evidence collectors: one small function per evidence kind, over the platform's real state.

Each takes a `ReportContext` (the environment, the period and facts shared between
collectors, computed once) and returns an `Evidence`. Collectors aggregate in SQL (counts,
group-bys) and never iterate audit events in Python, so a report over millions of events
stays within seconds.
"""

from __future__ import annotations

# Importing the modules registers their collectors.
from controlplane.compliance.collectors import access, logs, platform, policy, transparency  # noqa: F401
from controlplane.compliance.collectors.registry import COLLECTORS, collect, collector

__all__ = ["COLLECTORS", "EVIDENCE_KINDS", "collect", "collector"]

EVIDENCE_KINDS = frozenset(COLLECTORS) | {"manual"}
