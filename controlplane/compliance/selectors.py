"""Reads of the compliance domain: report history and the control ↔ rule mapping."""

from __future__ import annotations

from django.db.models import QuerySet

from controlplane.bundles.models import Environment
from controlplane.compliance.catalog import control_index, load_catalogs
from controlplane.compliance.catalog import framework as get_framework
from controlplane.compliance.models import GapReport
from controlplane.compliance.rules import parse_rules, policy_files_for, rules_by_control


def reports() -> QuerySet[GapReport]:
    return GapReport.objects.select_related("environment", "requested_by").defer("pdf")


def report_detail() -> QuerySet[GapReport]:
    return reports().prefetch_related("results")


def control_mapping(*, framework_id: str | None = None, environment: Environment | None = None) -> dict:
    """For each control, the rules and evidence kinds that serve it; for each rule, the
    controls it serves; the controls no rule serves; and rule annotations naming controls
    no catalog has (a typo in METADATA would otherwise silently serve nothing).

    With an environment, the rules are those of its active bundle; without, the current
    library and organisation modules.
    """
    files, bundle = policy_files_for(environment)
    rules = parse_rules(files)
    by_control = rules_by_control(rules)
    known = control_index()
    frameworks = [get_framework(framework_id)] if framework_id else list(load_catalogs().values())
    selected = {c.full_id for f in frameworks for c in f.controls}
    controls = []
    for framework in frameworks:
        for control in framework.controls:
            serving = by_control.get(control.full_id, [])
            controls.append({
                "framework": framework.id,
                "id": control.id,
                "full_id": control.full_id,
                "title": control.title,
                "evidence_kinds": list(control.evidence),
                "rules": [rule.id for rule in serving],
            })
    rule_rows = []
    for rule in rules:
        row = rule.as_dict()
        row["controls"] = [c for c in rule.controls if c in selected]
        row["unknown_controls"] = [c for c in rule.controls if c not in known]
        if row["controls"] or row["unknown_controls"] or not framework_id:
            rule_rows.append(row)
    if environment is None:
        source = "current policies (library and organisation modules)"
    elif bundle is None:
        source = f"{environment.name} has no active bundle"
    else:
        source = f"active bundle of {environment.name}"
    return {
        "source": source,
        "environment": environment.name if environment else None,
        "bundle_revision": bundle.revision if bundle else None,
        "controls": controls,
        "rules": rule_rows,
        "unserved_controls": [c["full_id"] for c in controls if not c["rules"]],
    }
