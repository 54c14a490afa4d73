"""The compliance API: everyone reads; admins and auditors ask for reports; bad input is a
400 naming the field; the PDF downloads as application/pdf once the report is done."""

import hashlib

import pytest

from controlplane.accounts.roles import ALL_ROLES
from controlplane.changelog.models import ObjectChange
from controlplane.compliance import services
from controlplane.compliance.models import GapReport, ReportStatus

pytestmark = pytest.mark.django_db

REPORTS = "/api/v1/compliance/reports/"


@pytest.fixture
def prod(deployment):
    return deployment().environment


@pytest.mark.parametrize("role", ALL_ROLES)
def test_every_role_reads_catalogs_mapping_and_reports(token_client, role, prod):
    client = token_client(role)
    frameworks = client.get("/api/v1/compliance/frameworks/").json()
    assert {f["id"] for f in frameworks} == {"eu_ai_act", "hipaa", "soc2"}
    assert client.get("/api/v1/compliance/frameworks/hipaa/").json()["retention"]["min_days"] == 2190
    assert client.get("/api/v1/compliance/mapping/?framework=soc2&environment=prod").status_code == 200
    assert client.get(REPORTS).status_code == 200


@pytest.mark.parametrize("role,allowed", [("admin", True), ("auditor", True), ("policy_author", False),
                                          ("approver", False)])
def test_admins_and_auditors_request_reports(token_client, role, allowed, prod, build_inline,
                                             django_capture_on_commit_callbacks):
    client = token_client(role)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(REPORTS, {"framework": "soc2", "environment": "prod"}, format="json")
    if not allowed:
        assert response.status_code == 403
        assert not GapReport.objects.exists()
        return
    assert response.status_code == 202, response.content
    report = GapReport.objects.get(pk=response.json()["id"])
    assert report.requested_by == client.user
    assert ObjectChange.objects.filter(object_id=str(report.pk), action="create").exists()
    detail = client.get(f"{REPORTS}{report.pk}/").json()
    assert detail["status"] == "done" and detail["progress"] == 100
    assert len(detail["results"]) == 49 and detail["pdf_url"].endswith("/pdf/")
    assert detail["catalog_version"] == "2026.11-2" and len(detail["pdf_sha256"]) == 64
    assert detail["categories"] == ["security"] and detail["package_url"].endswith("/package/")
    assert {r["control_id"] for r in detail["results"]} >= {"CC6.1", "PI1.5"}


def test_unauthenticated_requests_are_refused(anonymous_client):
    assert anonymous_client.get(REPORTS).status_code in (401, 403)


@pytest.mark.parametrize("body,field", [
    ({"environment": "prod"}, "framework"),
    ({"framework": "iso27001", "environment": "prod"}, "framework"),
    ({"framework": "soc2"}, "environment"),
    ({"framework": "soc2", "environment": "nowhere"}, "environment"),
    ({"framework": "soc2", "environment": "prod", "period_start": "yesterday"}, "period_start"),
    ({"framework": "soc2", "environment": "prod", "period_start": "2026-01-02T00:00:00Z",
      "period_end": "2026-01-01T00:00:00Z"}, "period_start"),
    ({"framework": "soc2", "environment": "prod", "period_end": "2999-01-01T00:00:00Z"}, "period_end"),
    ({"framework": "soc2", "environment": "prod", "period_start": "2000-01-01T00:00:00Z"}, "period_start"),
    ({"framework": ["soc2"], "environment": "prod"}, "framework"),
    ({"framework": "soc2", "environment": "prod", "categories": ["telepathy"]}, "categories"),
    ({"framework": "soc2", "environment": "prod", "categories": "privacy"}, "categories"),
    ({"framework": "soc2", "environment": "prod", "assess_as_of": "2027-13-01"}, "assess_as_of"),
    ({"framework": "soc2", "environment": "prod", "assess_as_of": "1900-01-01"}, "assess_as_of"),
])
def test_bad_report_requests_are_400_naming_the_field(admin_client, prod, body, field):
    response = admin_client.post(REPORTS, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not GapReport.objects.exists()


def test_times_with_large_utc_offsets_are_normalised_not_500(admin_client, prod):
    # ISO 8601 allows +20:00; PostgreSQL refuses offsets beyond ±15:59 unless we normalise.
    response = admin_client.post(REPORTS, {"framework": "soc2", "environment": "prod",
                                           "period_start": "2026-01-01T00:00:00+20:00"}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["period_start"] == "2025-12-31T04:00:00Z"


def test_mapping_rejects_unknown_framework_and_environment(admin_client, prod):
    assert "framework" in admin_client.get("/api/v1/compliance/mapping/?framework=pci").json()
    assert "environment" in admin_client.get("/api/v1/compliance/mapping/?environment=mars").json()
    assert admin_client.get("/api/v1/compliance/frameworks/pci/").status_code == 404


def test_mapping_lists_rules_per_control_controls_per_rule_and_unserved_controls(admin_client, prod):
    body = admin_client.get("/api/v1/compliance/mapping/?framework=eu_ai_act&environment=prod").json()
    assert body["source"] == "active bundle of prod" and body["bundle_revision"]
    controls = {c["id"]: c for c in body["controls"]}
    assert "agent-not-active" in controls["art14(4)(e)"]["rules"]
    assert "payment-requires-approval" in controls["art14(4)(d)"]["rules"]
    rules = {r["id"]: r for r in body["rules"]}
    assert rules["payment-requires-approval"]["effect"] == "require_approval"
    assert "eu_ai_act.art14(4)(d)" in rules["payment-requires-approval"]["controls"]
    assert rules["payment-requires-approval"]["file"] == "warden/approvals.rego"
    # Art. 4 (AI literacy) can only be attested: no rule serves it.
    assert "eu_ai_act.art4" in body["unserved_controls"]
    assert "eu_ai_act.art14(4)(e)" not in body["unserved_controls"]


def test_pdf_downloads_once_done_and_is_409_before(admin_client, prod, build_inline,
                                                  django_capture_on_commit_callbacks):
    pending = services.request_gap_report(framework="hipaa", environment=prod)  # not built: no commit callback
    response = admin_client.get(f"{REPORTS}{pending.pk}/pdf/")
    assert response.status_code == 409 and "pending" in response.json()["detail"]
    with django_capture_on_commit_callbacks(execute=True):
        done = services.request_gap_report(framework="hipaa", environment=prod)
    response = admin_client.get(f"{REPORTS}{done.pk}/pdf/", HTTP_ACCEPT="application/pdf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    done.refresh_from_db()
    assert response["X-Content-SHA256"] == done.pdf_sha256 == hashlib.sha256(response.content).hexdigest()
    assert admin_client.get(f"{REPORTS}{pending.pk}/pdf/", HTTP_ACCEPT="application/pdf").status_code == 409
    assert admin_client.get(f"{REPORTS}00000000-0000-0000-0000-000000000000/pdf/").status_code == 404
    assert admin_client.get(f"{REPORTS}not-a-uuid/pdf/").status_code == 404
    assert admin_client.get(f"{REPORTS}not-a-uuid/").status_code == 404


def test_reports_filter_by_framework_environment_and_status(admin_client, prod):
    services.request_gap_report(framework="hipaa", environment=prod)
    services.request_gap_report(framework="soc2", environment=prod)
    listed = admin_client.get(f"{REPORTS}?framework=hipaa&environment=prod&status=pending").json()["results"]
    assert [r["framework"] for r in listed] == ["hipaa"]
    assert admin_client.get(f"{REPORTS}?status=bogus").status_code == 400


def test_a_failing_build_is_recorded_not_raised(prod, monkeypatch, build_inline, django_capture_on_commit_callbacks):
    from controlplane.compliance.collectors import COLLECTORS

    def broken(context):
        raise RuntimeError("collector exploded")

    monkeypatch.setitem(COLLECTORS, "masking", broken)
    with django_capture_on_commit_callbacks(execute=True):
        report = services.request_gap_report(framework="soc2", environment=prod)
    report.refresh_from_db()
    assert report.status == ReportStatus.FAILED
    assert report.error == "RuntimeError: collector exploded"
    assert not report.results.exists()


def test_progress_is_visible_while_the_report_is_built(prod, monkeypatch):
    """The builder writes progress outside its result transaction: a reader sees it mid-build."""
    from controlplane.compliance.collectors import COLLECTORS

    report = services.request_gap_report(framework="soc2", environment=prod)
    seen = []
    original = COLLECTORS["policy_tests"]

    def watching(context):
        row = GapReport.objects.get(pk=report.pk)
        seen.append((row.status, row.progress, row.stage))
        return original(context)

    monkeypatch.setitem(COLLECTORS, "policy_tests", watching)
    services.build_gap_report(report.pk)
    assert seen and seen[0][0] == "running" and 0 < seen[0][1] < 90
    assert seen[0][2] == "collecting evidence: policy_tests"
    report.refresh_from_db()
    assert (report.status, report.progress) == ("done", 100)
    assert services.build_gap_report(report.pk) is None, "a finished report is left alone"
