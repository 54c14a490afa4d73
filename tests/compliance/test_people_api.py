"""The API for what people contribute: scope, agent classification, attestations and
exceptions (with their document's SHA-256), control owners and report sign-off. Hostile
input is a 400 naming the field; the rules between people (approver ≠ requester, three
different signers) are 409s."""

import base64
import hashlib
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.changelog.models import ObjectChange
from controlplane.compliance import services
from controlplane.compliance.models import AgentClassification, Attestation, ComplianceScope, ReportSignOff
from tests.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db

API = "/api/v1/compliance/"


@pytest.fixture
def prod(deployment):
    return deployment()


def attestation_body(**overrides):
    now = timezone.now()
    body = {
        "kind": "attestation", "framework": "hipaa", "control_id": "164.308(a)(1)(ii)(D)", "environment": "prod",
        "period_start": (now - timedelta(days=90)).isoformat(), "period_end": now.isoformat(),
        "statement": "Monthly review of decisions, denials and quarantines; no findings.",
        "owner": "compliance-admin", "expires_at": (now + timedelta(days=90)).isoformat(),
        "document_base64": base64.b64encode(b"review minutes").decode(), "document_name": "minutes.txt",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def test_an_attestation_stores_its_document_with_sha256_and_serves_it_back(admin_client, prod):
    response = admin_client.post(f"{API}attestations/", attestation_body(), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["document_sha256"] == hashlib.sha256(b"review minutes").hexdigest()
    assert body["state"] == "current" and body["created_by"] == admin_client.user.username
    document = admin_client.get(body["document_url"])
    assert document.status_code == 200 and document.content == b"review minutes"
    assert document["X-Content-SHA256"] == body["document_sha256"]
    listed = admin_client.get(f"{API}attestations/?framework=hipaa&environment=prod").json()
    assert [a["id"] for a in listed["results"]] == [body["id"]]
    assert ObjectChange.objects.filter(object_id=body["id"], action="create").exists()


@pytest.mark.parametrize("overrides,field", [
    ({"statement": "ok\x00hidden"}, "statement"),
    ({"statement": "\ud800"}, "statement"),
    ({"statement": "   "}, "statement"),
    ({"statement": "x" * 10001}, "statement"),
    ({"control_id": "164.999"}, "control_id"),
    ({"control_id": "CC6.1"}, "control_id"),  # a SOC 2 id under HIPAA
    ({"control_id": "164.312(b)\x00"}, "control_id"),
    ({"framework": "iso27001"}, "framework"),
    ({"environment": "staging"}, "environment"),
    ({"owner": "nobody"}, "owner"),
    ({"owner": ["compliance-admin"]}, "owner"),
    ({"document_base64": "not base64!"}, "document_base64"),
    ({"document_name": ""}, "document_name"),
    ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ({"expires_at": "2099-01-01T00:00:00Z"}, "expires_at"),
    ({"period_start": "2026-12-01T00:00:00Z", "period_end": "2026-11-01T00:00:00Z"}, "period_start"),
    ({"kind": "exception"}, "reason"),
    ({"kind": "vibe"}, "kind"),
])
def test_hostile_attestations_are_400_naming_the_field(admin_client, prod, overrides, field):
    # json.dumps escapes lone surrogates as \\udXXX, as a hostile client would send them.
    response = admin_client.post(f"{API}attestations/", json.dumps(attestation_body(**overrides)),
                                 content_type="application/json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert not Attestation.objects.exists()


def test_only_admins_record_attestations(token_client, prod):
    assert token_client("auditor").post(f"{API}attestations/", attestation_body(), format="json").status_code == 403
    assert token_client("auditor").get(f"{API}attestations/").status_code == 200


def test_an_exception_needs_an_approver_other_than_its_requester(admin_client, token_client, prod):
    body = attestation_body(kind="exception", control_id="164.312(a)(2)(iii)", document_base64=None,
                            document_name=None, reason="Legacy console session lifetime until migration.",
                            compensating_measure="VPN-only access with 15-minute idle timeout.")
    created = admin_client.post(f"{API}attestations/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["state"] == "awaiting_approval"
    url = f"{API}attestations/{created.json()['id']}/approve/"
    itself = admin_client.post(url)
    assert itself.status_code == 409 and "other than the requester" in str(itself.json())
    assert token_client("policy_author").post(url).status_code == 403
    approver = token_client("approver")
    approved = approver.post(url)
    assert approved.status_code == 200 and approved.json()["approved_by"] == approver.user.username
    assert approved.json()["state"] == "current"
    assert approver.post(url).status_code == 409, "approved once"
    revoke = admin_client.post(f"{API}attestations/{created.json()['id']}/revoke/")
    assert revoke.json()["state"] == "revoked"


def test_scope_is_read_and_set_per_environment_and_reaches_the_report(admin_client, prod, build_inline,
                                                                      django_capture_on_commit_callbacks):
    assert admin_client.get(f"{API}scopes/prod/").json()["eu_role"] == ""
    response = admin_client.put(f"{API}scopes/prod/", {
        "eu_role": "deployer", "soc2_categories": ["privacy", "availability"], "hipaa_entity": "business_associate",
        "out_of_scope": "Physical safeguards: inherited from the hosting provider.",
    }, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["soc2_categories"] == ["availability", "privacy"]
    assert ComplianceScope.objects.get(environment=prod.environment).updated_by == admin_client.user
    with django_capture_on_commit_callbacks(execute=True):
        report = services.request_gap_report(framework="soc2", environment=prod.environment, by=prod.admin)
    report.refresh_from_db()
    assert report.categories == ["security", "availability", "privacy"]
    assert report.scope["assumed"]["hipaa_entity"] == "business_associate"
    assert report.results.get(control_id="A1.1").status != "not_applicable"
    assert report.results.get(control_id="C1.1").status == "not_applicable"
    with django_capture_on_commit_callbacks(execute=True):
        eu = services.request_gap_report(framework="eu_ai_act", environment=prod.environment, by=prod.admin)
    eu.refresh_from_db()
    result = eu.results.get(control_id="art50(1)")
    assert result.status == "not_applicable" and "provider duty" in result.applicability


@pytest.mark.parametrize("body,field", [
    ({"eu_role": "overlord"}, "eu_role"),
    ({"soc2_categories": ["security"]}, "soc2_categories"),
    ({"soc2_categories": "privacy"}, "soc2_categories"),
    ({"hipaa_entity": "hospital"}, "hipaa_entity"),
    ({"out_of_scope": "a\x00b"}, "out_of_scope"),
    ({"out_of_scope": "\udfff"}, "out_of_scope"),
])
def test_hostile_scopes_are_400(admin_client, prod, body, field):
    response = admin_client.put(f"{API}scopes/prod/", json.dumps(body), content_type="application/json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert admin_client.put(f"{API}scopes/nowhere/", {}, format="json").status_code == 404


def test_classification_records_assessor_and_date_and_feeds_the_evidence(admin_client, prod):
    url = f"{API}classifications/billing-bot/"
    assert admin_client.get(url).json()["status"] == "unreviewed"
    no_reason = admin_client.put(url, {"status": "assessed", "high_risk_route": "none"}, format="json")
    assert no_reason.status_code == 400 and "rationale" in no_reason.json()
    no_point = admin_client.put(url, {"status": "assessed", "high_risk_route": "annex_iii",
                                      "rationale": "Credit decisions on natural persons."}, format="json")
    assert no_point.status_code == 400 and "annex_reference" in no_point.json()
    response = admin_client.put(url, {
        "status": "assessed", "high_risk_route": "annex_iii", "annex_reference": "5(b)",
        "rationale": "Decides refunds affecting natural persons' access to essential services.",
        "art50_triggers": ["interacts_with_persons"], "handles_ephi": False,
        "models_used": [{"provider": "Anthropic", "model": "claude", "version": "2026-10"}],
    }, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["assessed_by"] == admin_client.user.username and body["assessed_at"]
    from controlplane.compliance.collectors import collect
    from tests.compliance.test_collectors import context_for

    assert collect("risk_classification", context_for(prod.environment)).status == "met"
    assert collect("model_inventory", context_for(prod.environment)).status == "met"
    assert AgentClassification.objects.get(agent=prod.agent).high_risk_route == "annex_iii"


@pytest.mark.parametrize("body,field", [
    ({"status": "maybe"}, "status"),
    ({"status": "assessed", "high_risk_route": "annex_ix", "rationale": "r"}, "high_risk_route"),
    ({"status": "unreviewed", "art50_triggers": ["mind_reading"]}, "art50_triggers"),
    ({"status": "unreviewed", "models_used": [{"provider": "x"}]}, "models_used"),
    ({"status": "unreviewed", "models_used": [{"provider": "x\x00", "model": "m", "version": "1"}]}, "models_used"),
    ({"status": "unreviewed", "rationale": "\ud83d"}, "rationale"),
])
def test_hostile_classifications_are_400(admin_client, prod, body, field):
    response = admin_client.put(f"{API}classifications/billing-bot/", json.dumps(body),
                                content_type="application/json")
    assert response.status_code == 400, response.content
    assert field in str(response.json())
    assert admin_client.put(f"{API}classifications/no-such-agent/", {"status": "unreviewed"},
                            format="json").status_code == 404


def test_control_owners_are_set_and_shown_on_results(admin_client, prod, build_inline,
                                                     django_capture_on_commit_callbacks):
    response = admin_client.post(f"{API}control-owners/", {"framework": "soc2", "control_id": "CC6.1",
                                                            "environment": "prod", "owner": "payments-owner",
                                                            "review_every_days": 30}, format="json")
    assert response.status_code == 200, response.content
    bad = admin_client.post(f"{API}control-owners/", {"framework": "soc2", "control_id": "CC6.1",
                                                       "environment": "prod", "owner": "payments-owner",
                                                       "review_every_days": 0}, format="json")
    assert bad.status_code == 400 and "review_every_days" in bad.json()
    assert admin_client.get(f"{API}control-owners/?framework=soc2").json()["results"][0]["owner"] == "payments-owner"
    with django_capture_on_commit_callbacks(execute=True):
        report = services.request_gap_report(framework="soc2", environment=prod.environment, by=prod.admin)
    assert report.results.get(control_id="CC6.1").owner == "payments-owner"


def test_sign_off_needs_three_different_people_in_order(admin_client, token_client, prod, build_inline,
                                                        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        report = services.request_gap_report(framework="soc2", environment=prod.environment, by=prod.admin)
    url = f"{API}reports/{report.pk}/sign-off/"
    out_of_order = admin_client.post(url, {"role": "reviewer"}, format="json")
    assert out_of_order.status_code == 409 and "preparer" in str(out_of_order.json())
    assert admin_client.post(url, {"role": "preparer", "comment": "prepared"}, format="json").status_code == 201
    again = admin_client.post(url, {"role": "reviewer"}, format="json")
    assert again.status_code == 409 and "three different people" in str(again.json())
    assert token_client("policy_author").post(url, {"role": "reviewer"}, format="json").status_code == 403
    assert admin_client.post(url, {"role": "owner"}, format="json").status_code == 400
    assert admin_client.post(url, {"role": "preparer", "comment": "\x00"}, format="json").status_code in (400, 409)
    auditor = token_client("auditor")
    assert auditor.post(url, {"role": "reviewer"}, format="json").status_code == 201
    approver = UserFactory(username="ciso", roles=["approver"])
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(approver)
    assert client.post(url, {"role": "approver"}, format="json").status_code == 201
    detail = admin_client.get(f"{API}reports/{report.pk}/").json()
    assert [s["role"] for s in detail["sign_offs"]] == ["preparer", "reviewer", "approver"]
    assert ReportSignOff.objects.filter(report=report).count() == 3
