"""From evidence to control statuses, a summary, a score and the difference between two
reports. Pure functions over plain data, so the rules are easy to read and to test."""

from __future__ import annotations

from controlplane.compliance.catalog import Control, Framework
from controlplane.compliance.evidence import GAP, MANUAL, MET, NOT_APPLICABLE, PARTIAL, RANK, STATUSES, Evidence

ADDRESSABLE_NOTE = (
    "Addressable: implement it, or document why it is not reasonable and appropriate and the equivalent "
    "measure used instead (45 CFR 164.306(d)(3))."
)


def applicability(control: Control, *, high_risk_agents: int, environment: str) -> tuple[bool, str]:
    """Whether the control applies to this environment, and why (shown in the report)."""
    if control.applies_to == "high_risk":
        if not high_risk_agents:
            return False, f"No agent in {environment} has risk tier high: high-risk obligations do not apply."
        return True, f"{high_risk_agents} high-risk agent(s) in {environment}."
    return True, ""


def assess_control(control: Control, evidence: dict[str, Evidence], *, applicable: bool, reason: str,
                   rules: list[dict]) -> dict:
    """One control's result.

    - not applicable: the control does not apply here (e.g. no high-risk agent);
    - manual: no evidence kind of the control can be produced by the platform;
    - met: every automatic evidence kind is met and nothing needs a person's attestation;
    - gap: no automatic evidence kind is met or partial;
    - partial: anything in between, including all automatic evidence met while part of the
      control can only be attested by a person (we never claim more than we can show).
    """
    items = [evidence[kind] for kind in control.automatic_evidence]
    automatic = [e for e in items if e.status in (MET, PARTIAL, GAP)]
    attest = control.needs_attestation or any(e.status == MANUAL for e in items)
    if not applicable:
        status = NOT_APPLICABLE
    elif not automatic:
        status = MANUAL
    elif all(e.status == MET for e in automatic) and not attest:
        status = MET
    elif all(e.status == GAP for e in automatic):
        status = GAP
    else:
        status = PARTIAL
    missing, remediation = [], []
    if status not in (NOT_APPLICABLE,):
        for item in items:
            if item.status != MET:
                missing.extend(item.missing)
                if item.remediation:
                    remediation.append(item.remediation)
        if control.needs_attestation:
            missing.append("a person's attestation for the part of this control the platform cannot evidence")
            remediation.append("Record the attestation (owner, date, document) with your compliance records.")
        if status in (GAP, PARTIAL) and control.implementation == "addressable":
            remediation.append(ADDRESSABLE_NOTE)
    evidence_list = [item.as_dict() for item in items]
    if control.needs_attestation:
        evidence_list.append({"kind": "manual", "status": MANUAL, "summary": "Needs a person's attestation.",
                              "objects": [], "objects_total": 0, "missing": [], "remediation": "", "figures": {}})
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
    }


def summarise(results: list[dict]) -> tuple[dict, float | None]:
    """Counts per status and a score: met counts 1, partial ½, gap 0, over the controls the
    platform can assess (manual and not-applicable controls are counted, not scored)."""
    counts = {status: 0 for status in STATUSES}
    for result in results:
        counts[result["status"]] += 1
    scored = counts[MET] + counts[PARTIAL] + counts[GAP]
    score = round(100 * (counts[MET] + 0.5 * counts[PARTIAL]) / scored, 1) if scored else None
    return {**counts, "total": len(results), "scored": scored, "score": score}, score


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


__all__ = ["NOT_APPLICABLE", "applicability", "assess_control", "difference", "summarise"]
