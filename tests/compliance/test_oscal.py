"""The OSCAL Assessment Results export: the document has every field OSCAL 1.1.2 requires
(checked with a JSON Schema of the model's required structure), only "met" is satisfied,
not-applicable controls are excluded rather than reported, every finding points at
observations that exist, and exporting twice gives the same document.

The report is stored directly (rows as a build leaves them): the export reads only stored
results, and building one through the collectors costs 3-7 s (covered in test_api/test_pdf)."""

from datetime import timedelta

import jsonschema
import pytest
from django.utils import timezone

from controlplane.compliance import oscal
from controlplane.compliance.evidence import Evidence, ObjectRef
from controlplane.compliance.models import ControlResult, GapReport, ReportSignOff, ReportStatus
from tests.accounts.factories import UserFactory
from tests.bundles.factories import EnvironmentFactory

pytestmark = pytest.mark.django_db

UUID = {"type": "string", "pattern": r"^[0-9a-f]{8}-[0-9a-f]{4}-[45][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"}
DATETIME = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"}
TEXT = {"type": "string", "minLength": 1}
PROPS = {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["name", "value"],
                                                  "properties": {"name": {"type": "string", "pattern": r"^[A-Za-z_][\w.-]*$"},
                                                                 "value": TEXT, "ns": {"type": "string", "format": "uri"}}}}
# The required structure of OSCAL 1.1.2 assessment-results (NIST's model), the parts Warden emits.
SCHEMA = {
    "type": "object", "required": ["assessment-results"], "additionalProperties": False,
    "properties": {"assessment-results": {
        "type": "object", "required": ["uuid", "metadata", "import-ap", "results"],
        "properties": {
            "uuid": UUID,
            "metadata": {"type": "object", "required": ["title", "last-modified", "version", "oscal-version"],
                         "properties": {"title": TEXT, "last-modified": DATETIME, "version": TEXT,
                                        "oscal-version": {"type": "string", "pattern": r"^1\.\d+\.\d+$"}, "props": PROPS,
                                        "parties": {"type": "array", "minItems": 1, "items": {
                                            "type": "object", "required": ["uuid", "type"],
                                            "properties": {"uuid": UUID, "type": {"enum": ["person", "organization"]}}}}}},
            "import-ap": {"type": "object", "required": ["href"], "properties": {"href": TEXT}},
            "results": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["uuid", "title", "description", "start", "reviewed-controls"],
                "properties": {
                    "uuid": UUID, "start": DATETIME, "end": DATETIME, "props": PROPS,
                    "reviewed-controls": {"type": "object", "required": ["control-selections"], "properties": {
                        "control-selections": {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {
                            "include-controls": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["control-id"]}},
                            "exclude-controls": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["control-id"]}},
                        }}}}},
                    "observations": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["uuid", "description", "methods", "collected"],
                        "properties": {"uuid": UUID, "collected": DATETIME, "expires": DATETIME, "props": PROPS,
                                       "methods": {"type": "array", "minItems": 1,
                                                   "items": {"enum": ["EXAMINE", "INTERVIEW", "TEST", "UNKNOWN"]}},
                                       "relevant-evidence": {"type": "array", "minItems": 1,
                                                             "items": {"type": "object", "required": ["description"]}}}}},
                    "findings": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["uuid", "title", "description", "target"],
                        "properties": {
                            "uuid": UUID, "props": PROPS,
                            "target": {"type": "object", "required": ["type", "target-id", "status"], "properties": {
                                "type": {"enum": ["statement-id", "objective-id"]},
                                "status": {"type": "object", "required": ["state"], "properties": {
                                    "state": {"enum": ["satisfied", "not-satisfied"]},
                                    "reason": {"enum": ["pass", "fail", "other"]}}}}},
                            "related-observations": {"type": "array", "minItems": 1, "items": {
                                "type": "object", "required": ["observation-uuid"],
                                "properties": {"observation-uuid": UUID}}}}}},
                }}},
        }}},
}


@pytest.fixture
def report():
    now = timezone.now()
    env = EnvironmentFactory(name="prod")
    report = GapReport.objects.create(framework="hipaa", environment=env, period_start=now - timedelta(days=90),
                                      period_end=now, status=ReportStatus.DONE, finished_at=now, score=40.0,
                                      catalog_version="2026.11", catalog_sha256="ab" * 32, pdf_sha256="cd" * 32)
    probe = Evidence(kind="egress_probe", status="gap", summary="billing-bot may reach any host",
                     objects=[ObjectRef("identity.agent", "7", "billing-bot")], missing=["an egress allowlist"],
                     probes=[{"input": {"host": "evil.example"}, "decision": {"allow": True}}],
                     population="live agents of prod", population_size=1, collected_at=now.isoformat())
    logging = Evidence(kind="decision_logging", status="met", summary="decision logging on", collected_at=now.isoformat())
    rows = [
        ("164.312(b)", "met", [logging.as_dict()], []),
        ("164.312(e)(1)", "gap", [probe.as_dict()], []),
        ("164.308(a)(5)(ii)(C)", "partial", [logging.as_dict()], []),
        ("164.308(a)(6)(ii)", "not_tested", [], []),
        ("164.308(a)(1)(ii)(A)", "manual", [], [{"id": "a1", "kind": "attestation", "statement": "Risk analysis done.",
                                                 "owner": "ann", "attested_by": "ann", "created_at": now.isoformat(),
                                                 "expires_at": (now + timedelta(days=200)).isoformat(),
                                                 "document_name": "ra.pdf", "document_sha256": "ef" * 32}]),
        ("164.310(a)(1)", "not_applicable", [], []),
    ]
    for n, (control_id, status, evidence, attested) in enumerate(rows):
        ControlResult.objects.create(report=report, position=n, control_id=control_id, title=f"Control {control_id}",
                                     requirement="Text.", status=status, evidence=evidence, attestations=attested,
                                     missing=["an egress allowlist"] if status == "gap" else [])
    ReportSignOff.objects.create(report=report, role="preparer", user=UserFactory(username="ann"))
    return report


def test_the_export_has_oscal_required_structure_and_claims_only_what_was_met(report):
    document = oscal.assessment_results(report)
    jsonschema.validate(document, SCHEMA, format_checker=jsonschema.FormatChecker())
    result = document["assessment-results"]["results"][0]
    states = {f["target"]["target-id"]: (f["target"]["status"]["state"], f["target"]["status"]["reason"])
              for f in result["findings"]}
    assert states == {"164.312(b)": ("satisfied", "pass"), "164.312(e)(1)": ("not-satisfied", "fail"),
                      "164.308(a)(5)(ii)(C)": ("not-satisfied", "fail"),
                      "164.308(a)(6)(ii)": ("not-satisfied", "other"),
                      "164.308(a)(1)(ii)(A)": ("not-satisfied", "other")}
    selection = result["reviewed-controls"]["control-selections"][0]
    assert selection["exclude-controls"] == [{"control-id": "164.310(a)(1)"}]
    observations = {o["uuid"]: o for o in result["observations"]}
    for finding in result["findings"]:
        assert all(r["observation-uuid"] in observations for r in finding.get("related-observations", []))
    by_title = {o["title"]: o for o in observations.values()}
    assert by_title["egress_probe"]["methods"] == ["TEST"] and by_title["decision_logging"]["methods"] == ["EXAMINE"]
    assert by_title["attestation by ann"]["methods"] == ["INTERVIEW"]
    assert "sha256:" + "ef" * 32 in by_title["attestation by ann"]["relevant-evidence"][0]["description"]
    not_tested = next(f for f in result["findings"] if f["target"]["target-id"] == "164.308(a)(6)(ii)")
    assert "No instances occurred" in not_tested["remarks"]
    uuids = [o["uuid"] for o in result["observations"]] + [f["uuid"] for f in result["findings"]]
    assert len(uuids) == len(set(uuids))
    assert document == oscal.assessment_results(report)  # deterministic


def test_the_api_serves_the_export_and_refuses_an_unfinished_report(admin_client, report):
    response = admin_client.get(f"/api/v1/compliance/reports/{report.pk}/oscal/")
    assert response.status_code == 200 and "oscal-ar.json" in response["Content-Disposition"]
    jsonschema.validate(response.json(), SCHEMA)
    GapReport.objects.filter(pk=report.pk).update(status=ReportStatus.RUNNING)
    response = admin_client.get(f"/api/v1/compliance/reports/{report.pk}/oscal/")
    assert response.status_code == 409 and "running" in response.json()["detail"]
