"""Reads of authored rules that other domains need."""

from __future__ import annotations

import re

from controlplane.authoring.models import AuthoredRule

# The generated module states its quorum as `quorum := N` (templates._approval_body); the
# module is the source of truth once written, so an edit made as Rego counts.
_QUORUM = re.compile(r"^quorum\s*:=\s*(\d+)\s*$", re.M)


def template_quorum(rule_ids: list[str]) -> int:
    """The largest quorum that the require_approval rules named by `rule_ids` (a decision's
    reason rules, e.g. "large-payments") ask for; 1 when none of them is an authored one."""
    names = {rule.replace("-", "_") for rule in rule_ids}
    if not names:
        return 1
    quorum = 1
    authored = AuthoredRule.objects.filter(name__in=names, template="require_approval").select_related(
        "module__current_revision"
    )
    for rule in authored:
        revision = rule.module.current_revision if rule.module_id else None
        found = _QUORUM.search(revision.source) if revision is not None else None
        value = int(found.group(1)) if found else int(rule.params.get("quorum") or 1)
        quorum = max(quorum, value)
    return quorum
