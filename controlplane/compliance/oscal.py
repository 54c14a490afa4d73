"""A finished gap report as an OSCAL Assessment Results document (JSON, OSCAL 1.1.2), so a GRC
tool or an assessor's pipeline can import it: one result for the report's period, one
observation per evidence item (probes as TEST, everything else as EXAMINE, attestations as
INTERVIEW), one finding per assessed control.

OSCAL knows two states, satisfied and not-satisfied. Warden's statuses map onto them without
claiming more than the report does: only "met" is satisfied; "partial" and "gap" are
not-satisfied (reason fail); "not tested" and "attestation needed" are not-satisfied with
reason other and the Warden status as a property; "not applicable" controls are excluded from
the reviewed controls rather than reported as findings. UUIDs are derived from the report and
control ids, so exporting the same report twice gives the same document."""

from __future__ import annotations

import uuid
from datetime import timezone as dt_timezone
from typing import Any

from django.utils import timezone

from controlplane.compliance.catalog import load_catalogs
from controlplane.compliance.models import ControlStatus, GapReport, ReportStatus
from controlplane.core.exceptions import ConflictError

OSCAL_VERSION = "1.1.2"
NS = "https://warden.dev/ns/oscal"
_REASON = {ControlStatus.MET: "pass", ControlStatus.PARTIAL: "fail", ControlStatus.GAP: "fail"}


def _uuid(report: GapReport, *parts: str) -> str:
    return str(uuid.uuid5(report.pk, "/".join(parts)))


def _ts(value) -> str:
    if isinstance(value, str):
        return value
    return (value or timezone.now()).astimezone(dt_timezone.utc).isoformat()


def _prop(name: str, value) -> dict:
    return {"name": name, "ns": NS, "value": str(value)}


def _observations(report: GapReport, result, collected: str) -> list[dict]:
    out = []
    for n, item in enumerate(result.evidence or []):
        if not isinstance(item, dict):
            continue
        kind = str(item.get("kind") or f"evidence-{n}")
        obs: dict[str, Any] = {
            "uuid": _uuid(report, result.control_id, "evidence", kind, str(n)),
            "title": kind,
            "description": str(item.get("summary") or kind),
            "methods": ["TEST"] if item.get("probes") else ["EXAMINE"],
            "types": ["control-objective"],
            "collected": str(item.get("collected_at") or collected),
            "props": [_prop("evidence-status", item.get("status") or "unknown")],
        }
        if item.get("population"):
            obs["props"].append(_prop("population", item["population"]))
        if item.get("population_size") is not None:
            obs["props"].append(_prop("population-size", item["population_size"]))
        relevant = [{"description": f"{o.get('type')} {o.get('id')} {o.get('label', '')}".strip()}
                    for o in (item.get("objects") or [])[:25] if isinstance(o, dict)]
        if relevant:
            obs["relevant-evidence"] = relevant
        if item.get("missing"):
            obs["remarks"] = "Missing: " + "; ".join(map(str, item["missing"]))
        out.append(obs)
    for a in result.attestations or []:
        if not isinstance(a, dict):
            continue
        obs = {
            "uuid": _uuid(report, result.control_id, "attestation", str(a.get("id"))),
            "title": f"{a.get('kind', 'attestation')} by {a.get('attested_by', '')}".strip(),
            "description": str(a.get("statement") or a.get("reason") or "attestation"),
            "methods": ["INTERVIEW"],
            "types": ["control-objective"],
            "collected": _ts(a.get("created_at")) if a.get("created_at") else collected,
            "props": [_prop("owner", a.get("owner") or "")],
        }
        if a.get("expires_at"):
            obs["expires"] = _ts(a["expires_at"])
        if a.get("document_sha256"):
            obs["relevant-evidence"] = [{"description": f"{a.get('document_name') or 'document'} "
                                                        f"sha256:{a['document_sha256']}"}]
        out.append(obs)
    return out


def assessment_results(report: GapReport) -> dict:
    """The OSCAL document for a finished report (ConflictError while it is being built)."""
    if report.status != ReportStatus.DONE:
        raise ConflictError(f"the report is {report.status}; only a finished report can be exported")
    framework = load_catalogs().get(report.framework)
    collected = _ts(report.finished_at)
    results = list(report.results.all().order_by("position"))
    observations: list[dict] = []
    findings: list[dict] = []
    included: list[dict] = []
    excluded: list[dict] = []
    for result in results:
        if result.status == ControlStatus.NOT_APPLICABLE:
            excluded.append({"control-id": result.control_id})
            continue
        included.append({"control-id": result.control_id})
        obs = _observations(report, result, collected)
        observations += obs
        state = "satisfied" if result.status == ControlStatus.MET else "not-satisfied"
        finding = {
            "uuid": _uuid(report, result.control_id, "finding"),
            "title": f"{result.control_id}: {result.title}",
            "description": result.requirement or result.title,
            "props": [_prop("warden-status", result.status)] + ([_prop("strength", result.strength)]
                                                                if result.strength else []),
            "target": {"type": "objective-id", "target-id": result.control_id,
                       "status": {"state": state, "reason": _REASON.get(result.status, "other")}},
        }
        remarks = [*map(str, result.missing or []), *map(str, result.contradictions or [])]
        if result.status == ControlStatus.NOT_TESTED:
            remarks.insert(0, "No instances occurred in the period: nothing was tested.")
        if remarks:
            finding["remarks"] = "; ".join(remarks)
        if obs:
            finding["related-observations"] = [{"observation-uuid": o["uuid"]} for o in obs]
        findings.append(finding)
    selection: dict = {"include-controls": included} if included else {"include-all": {}}
    if excluded:
        selection["exclude-controls"] = excluded
    parties = [{"uuid": _uuid(report, "party", s.role), "type": "person", "name": s.user.get_username(),
                "props": [_prop("sign-off", s.role), _prop("signed-at", _ts(s.signed_at))]}
               for s in report.sign_offs.select_related("user").all()]
    metadata: dict = {
        "title": f"Warden {framework.name if framework else report.framework} gap report: {report.environment.name}",
        "last-modified": collected,
        "version": report.catalog_version or "1",
        "oscal-version": OSCAL_VERSION,
        "props": [_prop("report-id", report.pk), _prop("framework", report.framework),
                  _prop("catalog-sha256", report.catalog_sha256 or "none"),
                  _prop("self-assessment", "true")],
    }
    if report.pdf_sha256:
        metadata["props"].append(_prop("pdf-sha256", report.pdf_sha256))
    if parties:
        metadata["parties"] = parties
    assessed: dict = {
        "uuid": _uuid(report, "result"),
        "title": f"{report.framework} {report.period_start:%Y-%m-%d} to {report.period_end:%Y-%m-%d}",
        "description": "Automated self-assessment from Warden's platform telemetry, signed audit records, "
                       "live policy decisions and recorded attestations; not an independent audit.",
        "start": _ts(report.period_start),
        "end": _ts(report.period_end),
        "props": [_prop("score", report.score if report.score is not None else "none")],
        "reviewed-controls": {"control-selections": [selection]},
    }
    # OSCAL arrays, when present, hold at least one item.
    if observations:
        assessed["observations"] = observations
    if findings:
        assessed["findings"] = findings
    return {"assessment-results": {
        "uuid": _uuid(report, "assessment-results"),
        "metadata": metadata,
        # Warden has no separate assessment plan: the plan is the versioned catalog itself.
        "import-ap": {"href": f"/api/v1/compliance/frameworks/{report.framework}/",
                      "remarks": "The assessment plan is Warden's control catalog at the version in metadata."},
        "results": [assessed],
    }}
