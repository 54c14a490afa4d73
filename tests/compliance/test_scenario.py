"""The acceptance scenario: a deployment with known gaps (decision logging off, a payments
tool filed under 'other' so no approval rule holds it) → exactly the affected controls are
gaps, with the right remediation; fix both → the next report marks them met and the
difference lists them as improved. Runs on PostgreSQL and SQLite."""

import pytest

from controlplane.bundles import services as bundle_services
from controlplane.compliance import services
from controlplane.compliance.models import ReportStatus
from controlplane.policies import services as policy_services
from controlplane.policies.models import Tool
from tests.compliance.conftest import receive_decision, results_of

pytestmark = pytest.mark.django_db

# EU AI Act controls touched by the two faults, and where they land once fixed. Controls that
# also list anomaly detection (which needs a person's attestation) can reach partial, not met.
BROKEN = {
    "art14(4)(c)": "gap",   # decision logging
    "art14(4)(d)": "gap",   # human approval
    "art12(2)": "gap", "art14(4)(a)": "gap", "art72": "gap",   # decision logging (+ anomaly: manual)
    "art12(1)": "partial",  # decision logging gap, signed audit log met
    "art14(1)": "partial",  # human approval gap, kill switch met
    "art15(4)": "partial", "art26(1)": "partial", "art26(2)": "partial",
}
FIXED = {
    "art14(4)(c)": "met", "art14(4)(d)": "met", "art12(1)": "met", "art14(1)": "met", "art15(4)": "met",
    "art26(1)": "met", "art26(2)": "met", "art12(2)": "partial", "art14(4)(a)": "partial", "art72": "partial",
}
# Unaffected by either fault, identical in both reports.
STEADY = {
    "art4": "manual", "art10": "manual", "art14(4)(b)": "manual", "art27": "manual", "art50(1)": "manual",
    "art9": "partial",  # anomaly detection needs attestation
    "art11": "partial", "art13": "partial", "art18": "partial",  # documentation lives partly outside Warden
    "art14(4)(e)": "met", "art15(1)": "met", "art19": "met", "art26(6)": "met",
    "art15(5)": "partial",  # sandbox: OS isolation is attested
    "art17": "partial",  # quality management needs attestation
    "art26(5)": "partial",  # anomaly detection needs attestation
    "art73": "manual",
}


def run(framework, environment, by):
    report = services.request_gap_report(framework=framework, environment=environment, by=by)
    report.refresh_from_db()
    assert report.status == ReportStatus.DONE, report.error
    return report


def test_known_gaps_are_reported_then_fixed_and_listed_as_improved(deployment, build_inline,
                                                                   django_capture_on_commit_callbacks):
    d = deployment(decision_logging=False, refund_category="other")
    with django_capture_on_commit_callbacks(execute=True):
        first = services.request_gap_report(framework="eu_ai_act", environment=d.environment, by=d.admin)
    first.refresh_from_db()
    assert first.status == ReportStatus.DONE, first.error
    statuses = results_of(first)
    assert {c: statuses[c] for c in BROKEN} == BROKEN
    assert {c: statuses[c] for c in STEADY} == STEADY
    assert set(statuses) == set(BROKEN) | set(STEADY)

    approval = first.results.get(control_id="art14(4)(d)")
    assert "stripe_refund (payment (by name or scope)) does not wait for approval" in approval.missing
    assert "set its category to 'payment'" in approval.remediation
    logging = first.results.get(control_id="art14(4)(c)")
    assert logging.missing == ["decision logging switched on for the environment"]
    assert '"decision_logging": true' in logging.remediation and "prod" in logging.remediation
    evidence = {e["kind"]: e for e in approval.evidence}
    refund = next(o for o in evidence["human_approval"]["objects"] if o["label"] == "stripe_refund")
    assert refund["type"] == "policies.tool" and refund["id"] == str(Tool.objects.get(name="stripe_refund").pk)
    assert first.summary["gap"] == 5 and first.diff["previous_report"] is None

    # Fix both: decisions logged (and received), the refund tool filed as a payment.
    with django_capture_on_commit_callbacks(execute=True):
        bundle_services.update_environment(d.environment, by=d.admin, decision_logging=True)
        policy_services.update_tool(Tool.objects.get(name="stripe_refund"), by=d.admin, category="payment")
    receive_decision(d.environment)
    d.refresh()
    with django_capture_on_commit_callbacks(execute=True):
        second = services.request_gap_report(framework="eu_ai_act", environment=d.environment, by=d.admin)
    second.refresh_from_db()
    assert second.status == ReportStatus.DONE, second.error
    statuses = results_of(second)
    assert {c: statuses[c] for c in FIXED} == FIXED
    assert {c: statuses[c] for c in STEADY} == STEADY

    diff = second.diff
    assert diff["previous_report"] == str(first.pk)
    assert {c["control_id"]: (c["from"], c["to"]) for c in diff["improved"]} == {
        c: (BROKEN[c], FIXED[c]) for c in BROKEN
    }
    assert diff["regressed"] == [] and diff["unchanged"] == len(STEADY)
    assert second.score > first.score and diff["score_change"] == round(second.score - first.score, 1)


def test_undoing_the_fix_is_listed_as_a_regression(deployment, build_inline, django_capture_on_commit_callbacks):
    d = deployment()
    with django_capture_on_commit_callbacks(execute=True):
        good = services.request_gap_report(framework="soc2", environment=d.environment, by=d.admin)
    with django_capture_on_commit_callbacks(execute=True):
        bundle_services.update_environment(d.environment, by=d.admin, decision_logging=False)
    d.refresh()
    with django_capture_on_commit_callbacks(execute=True):
        bad = services.request_gap_report(framework="soc2", environment=d.environment, by=d.admin)
    good.refresh_from_db(), bad.refresh_from_db()
    assert results_of(good)["CC2.1"] == "met"
    assert results_of(bad)["CC2.1"] == "gap"
    assert {"control_id": "CC2.1", "from": "met", "to": "gap"} in bad.diff["regressed"]
    assert bad.diff["improved"] == []


def test_high_risk_obligations_do_not_apply_without_a_high_risk_agent(deployment, build_inline,
                                                                       django_capture_on_commit_callbacks):
    d = deployment()
    with django_capture_on_commit_callbacks(execute=True):
        from controlplane.identity import services as identity_services

        identity_services.update_agent(d.agent, by=d.admin, risk_tier="limited")
        report = services.request_gap_report(framework="eu_ai_act", environment=d.environment, by=d.admin)
    report.refresh_from_db()
    statuses = results_of(report)
    assert statuses["art14(4)(e)"] == "not_applicable"
    assert "risk tier high" in report.results.get(control_id="art14(4)(e)").applicability
    assert statuses["art4"] == "manual" and statuses["art50(1)"] == "manual"
    assert report.summary["not_applicable"] == 25 and report.score is None
