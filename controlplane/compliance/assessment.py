"""From evidence to control statuses, a summary, a score and the difference between two
reports. Pure functions over plain data, so the rules are easy to read and to test.

What "met" means here is what an auditor accepts: a non-empty population that was tested,
every automatic evidence kind met without a contradiction, and — where the control asks a
person to review, assign, identify or evaluate, where part of it is manual, or where
telemetry can only support it — a person's current attestation.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from controlplane.compliance.catalog import Control, Framework
from controlplane.compliance.evidence import (
    GAP,
    MANUAL,
    MET,
    NOT_APPLICABLE,
    NOT_TESTED,
    PARTIAL,
    RANK,
    STATUSES,
    Evidence,
)

ADDRESSABLE_NOTE = (
    "Addressable: implement it, or document why it is not reasonable and appropriate and the equivalent "
    "measure used instead (45 CFR 164.306(d)(3))."
)
ROUTE_LABELS = {"annex_iii": "Annex III", "annex_i": "Annex I", "all": "all systems"}


@dataclass
class ScopeFacts:
    """What the report assumes about the organisation and its agents (from ComplianceScope
    and AgentClassification), reduced to what applicability needs."""

    environment: str
    eu_role: str = ""  # provider, deployer, both; "" = undeclared (assumed both)
    gpai_model_provider: bool = False
    soc2_categories: tuple[str, ...] = ("security",)
    hipaa_entity: str = ""
    # High-risk agents by route ("annex_iii", "annex_i"); an agent marked high risk with no
    # assessed route counts under "annex_iii", the earlier date, and is named as unassessed.
    high_risk_routes: dict[str, list[str]] = field(default_factory=dict)
    unassessed_high_risk: list[str] = field(default_factory=list)


def applicability(control: Control, scope: ScopeFacts, *, as_of: datetime.date) -> tuple[bool, str, str]:
    """Whether the control applies here on `as_of`, why (shown in the report), and when it
    applies from on the routes present."""
    by_route = dict(control.applies_from_by_route)
    dates_text = ", ".join(f"{ROUTE_LABELS.get(r, r)}: {d.isoformat()}" for r, d in sorted(by_route.items()))
    if control.framework == "soc2" and control.category not in scope.soc2_categories:
        return False, f"The {control.category.replace('_', ' ')} category is not in this report's scope.", dates_text
    if control.framework == "hipaa" and scope.hipaa_entity == "not_subject":
        return False, f"{scope.environment} is declared not subject to HIPAA.", dates_text
    if control.role in ("provider", "deployer") and scope.eu_role in ("provider", "deployer") \
            and control.role != scope.eu_role:
        return False, f"A {control.role} duty; the organisation declared itself {scope.eu_role} only.", dates_text
    if control.applies_to == "gpai_provider" and not scope.gpai_model_provider:
        return False, "Applies only to providers placing a general-purpose AI model on the market (not declared).", \
            dates_text
    if control.applies_to == "high_risk":
        routes = {r: agents for r, agents in scope.high_risk_routes.items() if agents}
        if not routes:
            return False, f"No agent in {scope.environment} is classified high-risk: high-risk obligations do not " \
                "apply.", dates_text
        starts = {r: control.applies_from_for(r) for r in routes}
        in_force = {r: d for r, d in starts.items() if d is None or d <= as_of}
        if not in_force:
            first = min(starts.values())
            return False, (f"Not yet in force on {as_of.isoformat()}: applies from " + ", ".join(
                f"{d.isoformat()} for {ROUTE_LABELS[r]} agent(s) ({', '.join(routes[r])})"
                for r, d in sorted(starts.items())) + f". Readiness: request the report with assess_as_of "
                f"{first.isoformat()}."), dates_text
        agents = sorted({a for r in in_force for a in routes[r]})
        reason = f"{len(agents)} high-risk agent(s) in {scope.environment} ({', '.join(agents)})."
        if scope.unassessed_high_risk:
            reason += (f" Route not assessed for {', '.join(scope.unassessed_high_risk)}: assumed Annex III, the "
                       "earlier date.")
        return True, reason, dates_text
    start = control.applies_from_for("all")
    if start is not None and start > as_of:
        return False, f"Not yet in force on {as_of.isoformat()}: applies from {start.isoformat()}.", dates_text
    return True, "", dates_text


def _attestation_state(attestations: list[dict], *, as_of: datetime.datetime) -> tuple[dict | None, dict | None,
                                                                                           list[str]]:
    """The current attestation and approved exception, and notes on expired ones."""
    current, exception, notes = None, None, []
    for item in attestations:
        expires = item["expires_at"]
        expired = expires <= as_of or item.get("revoked_at") is not None
        if item["kind"] == "attestation":
            if expired:
                notes.append(f"attestation by {item['owner']} expired on {expires:%Y-%m-%d}: renew it")
            elif current is None:
                current = item
        elif item["kind"] == "exception" and item.get("approved_by"):
            if expired:
                notes.append(f"exception approved by {item['approved_by']} expired on {expires:%Y-%m-%d}")
            elif exception is None:
                exception = item
    return current, exception, notes


def _public(item: dict | None) -> dict | None:
    if item is None:
        return None
    return {k: (v.isoformat() if isinstance(v, datetime.datetime) else v) for k, v in item.items()}


def assess_control(control: Control, evidence: dict[str, Evidence], *, applicable: bool, reason: str,
                   rules: list[dict], attestations: list[dict] | None = None,
                   as_of: datetime.datetime | None = None, applies_from: str = "", owner: str = "") -> dict:
    """One control's result.

    - not applicable: the control does not apply here (scope, route, date or category);
    - not tested: every automatic evidence kind had an empty population in the period;
    - manual: only a person can evidence it, and no current attestation exists;
    - met: every automatic evidence kind met on a non-empty population, no contradiction,
      and a current attestation wherever the control needs a person;
    - gap: no automatic evidence kind is met or partial;
    - partial: anything in between.
    """
    as_of = as_of or datetime.datetime.now(datetime.UTC)
    items = [evidence[kind] for kind in control.automatic_evidence]
    attested, exception, notes = _attestation_state(attestations or [], as_of=as_of)
    tested = [e for e in items if e.status in (MET, PARTIAL, GAP)]
    untested = [e for e in items if e.status == NOT_TESTED]
    contradictions = [c for e in items for c in e.contradictions]
    needs_person = (control.needs_attestation or control.attestation_required or control.strength == "supports"
                    or any(e.status == MANUAL for e in items))
    if not applicable:
        status = NOT_APPLICABLE
    elif not items:
        status = MET if attested else MANUAL
    elif not tested:
        status = NOT_TESTED if untested else (MET if attested else MANUAL)
    elif all(e.status == GAP for e in tested):
        status = GAP
    elif (all(e.status == MET for e in tested) and not untested and not contradictions
          and (attested or not needs_person)):
        status = MET
    else:
        status = PARTIAL
    missing, remediation = [], []
    if status != NOT_APPLICABLE:
        for item in items:
            if item.status != MET:
                missing.extend(item.missing)
                if item.remediation:
                    remediation.append(item.remediation)
        missing.extend(notes)
        missing.extend(f"contradiction: {c}" for c in contradictions)
        if needs_person and not attested:
            if control.strength == "supports":
                missing.append("platform telemetry only supports this control: a person's attestation of the "
                               "entity's own control is needed for met")
            elif control.attestation_required and not control.needs_attestation:
                missing.append("the control asks a person to review, assign, identify or evaluate: record their "
                               "attestation")
            else:
                missing.append("a person's attestation for the part of this control the platform cannot evidence")
            remediation.append("Record an attestation (POST /api/v1/compliance/attestations/) with the statement, "
                               "owner, period, expiry and supporting document.")
        if status in (GAP, PARTIAL) and control.implementation == "addressable":
            remediation.append(ADDRESSABLE_NOTE)
    evidence_list = [item.as_dict() for item in items]
    if control.needs_attestation:
        evidence_list.append({
            "kind": "manual", "status": MET if attested else MANUAL,
            "summary": (f"Attested by {attested['owner']}: {attested['statement'][:300]}" if attested
                        else "Needs a person's attestation."),
            "objects": [], "objects_total": 0, "missing": [], "remediation": "", "figures": {},
            "population": "", "population_size": None, "probes": [], "contradictions": [], "collected_at": "",
        })
    return {
        "control_id": control.id,
        "title": control.title,
        "requirement": control.requirement,
        "evidence_kinds": list(control.evidence),
        "status": status,
        "applicability": reason,
        "evidence": evidence_list,
        "missing": list(dict.fromkeys(missing)),
        "remediation": " ".join(dict.fromkeys(remediation)),
        "rules": rules,
        "applies_from": applies_from,
        "strength": control.strength,
        "owner": owner,
        "attestations": [a for a in (_public(attested), _public(exception)) if a],
        "contradictions": contradictions,
    }


def summarise(results: list[dict]) -> tuple[dict, float | None]:
    """Counts per status, a score and coverage. The score weighs met 1, partial ½, gap 0
    over the controls the platform tested; not-tested, manual and not-applicable controls
    are counted, not scored, and coverage says how many applicable controls that is."""
    counts = {status: 0 for status in STATUSES}
    for result in results:
        counts[result["status"]] += 1
    scored = counts[MET] + counts[PARTIAL] + counts[GAP]
    applicable = len(results) - counts[NOT_APPLICABLE]
    score = round(100 * (counts[MET] + 0.5 * counts[PARTIAL]) / scored, 1) if scored else None
    coverage = round(100 * scored / applicable, 1) if applicable else None
    return {**counts, "total": len(results), "scored": scored, "applicable": applicable, "score": score,
            "coverage": coverage,
            "accepted_risks": sum(1 for r in results if any(a.get("kind") == "exception" for a in r["attestations"])),
            "contradictions": sum(1 for r in results if r["contradictions"])}, score


def difference(previous: list[dict] | None, current: list[dict], *, previous_meta: dict | None = None) -> dict:
    """What changed since the previous report of the same framework and environment:
    improved / regressed (by met > partial > gap), other status changes, unchanged."""
    if previous is None:
        return {"previous_report": None, "improved": [], "regressed": [], "changed": [], "unchanged": 0,
                "added": [], "removed": []}
    before = {r["control_id"]: r["status"] for r in previous}
    after = {r["control_id"]: r["status"] for r in current}
    improved, regressed, changed, unchanged = [], [], [], 0
    for control_id, status in after.items():
        if control_id not in before:
            continue
        old = before[control_id]
        entry = {"control_id": control_id, "from": old, "to": status}
        if old == status:
            unchanged += 1
        elif old in RANK and status in RANK:
            (improved if RANK[status] > RANK[old] else regressed).append(entry)
        else:
            changed.append(entry)
    return {
        **(previous_meta or {}),
        "improved": improved,
        "regressed": regressed,
        "changed": changed,
        "unchanged": unchanged,
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
    }


def control_order(framework: Framework) -> dict[str, int]:
    return {c.id: i for i, c in enumerate(framework.controls)}


__all__ = ["NOT_APPLICABLE", "ScopeFacts", "applicability", "assess_control", "difference", "summarise"]
