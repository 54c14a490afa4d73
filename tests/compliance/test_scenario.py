"""The acceptance scenario: a deployment with known gaps (decision logging off, a payments
tool filed under 'other' so no approval rule holds it) → exactly the affected controls are
gaps, with the right remediation; fix both → the next report marks them met and the
difference lists them as improved. Runs on PostgreSQL and SQLite."""

import datetime

import pytest

from controlplane.bundles import services as bundle_services
from controlplane.compliance import services
from controlplane.compliance.catalog import framework as get_framework
from controlplane.compliance.models import ReportStatus
from controlplane.policies import services as policy_services
from controlplane.policies.models import Tool
from tests.compliance.conftest import receive_decision, results_of

pytestmark = pytest.mark.django_db

# High-risk obligations apply to the Annex III route from 2027-12-02: the scenario is a
# readiness assessment as of that date.
READINESS = datetime.date(2027, 12, 2)

# EU AI Act controls touched by the two faults, and where they land once fixed. Anomaly
# detection raised no alert in the period (partial), human approval has no approval records
# (partial: designed, not operating), and controls asking a person to assign or evaluate need
# an attestation: none of those can reach "met" here, and that is the point.
BROKEN = {
    "art14(4)(c)": "gap",   # decision logging
    "art14(4)(d)": "gap",   # human approval: a payments tool runs without a person
    "art12(2)": "partial", "art14(4)(a)": "partial", "art72": "partial",  # decision logging gap + anomaly partial
    "art12(1)": "partial",  # decision logging gap, signed audit log met
    "art14(1)": "partial",  # human approval gap, kill switch partial (not used on prod's agents)
    "art15(4)": "partial", "art26(1)": "partial",  # deny rules gap, policy tests / scopes met
    "art86(1)": "gap", "annex_iv(9)": "gap",  # decision logging (+ manual)
}
FIXED = {
    "art14(4)(c)": "met", "art12(1)": "met", "art15(4)": "met", "art26(1)": "met",
    "art14(4)(d)": "partial",  # approval rules hold it now, but no approval record exists
    "art14(1)": "partial", "art12(2)": "partial", "art14(4)(a)": "partial", "art72": "partial",
    "art86(1)": "partial", "annex_iv(9)": "partial",  # the manual part (export, PMM plan) is attested
}
# Unaffected by either fault, identical in both reports.
STEADY = {
    "art4": "manual", "art5(1)": "manual", "art10": "manual", "art14(4)(b)": "manual", "art26(4)": "manual",
    "art26(7)": "manual", "art26(11)": "manual", "art27": "manual", "art49": "manual",
    # Nobody classified billing-bot, so whether it triggers Art. 50 is unknown (was "manual").
    "art50(1)": "gap", "art50(2)": "gap", "art50(4)": "gap",
    "art6(3)": "gap", "art25": "gap",  # nobody assessed the agent's classification or recorded its models
    "art9": "partial",  # "evaluates": needs a person's attestation; anomaly detection partial
    "art11": "partial", "art13": "partial", "art18": "partial",  # documentation lives partly outside Warden
    "annex_iv(2)(e)": "partial", "annex_iv(3)": "partial", "annex_iv(6)": "partial",
    "art14(4)(e)": "partial", "art20(1)": "partial", "art26(5)": "partial",  # kill switch not used on prod
    "art15(1)": "partial",  # policy tests say nothing about accuracy: capped
    "art15(5)": "partial",  # sandbox: OS isolation is attested
    "art17": "not_tested", "art73": "not_tested",  # no policy revision, no incident in the period
    "art19(1)": "met", "art26(6)": "met",  # 190 days configured, and everything since first seen is held
    "art26(2)": "partial",  # "assigns": an attestation is needed for met
    "art53": "not_applicable",  # no GPAI model placed on the market
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
        first = services.request_gap_report(framework="eu_ai_act", environment=d.environment, by=d.admin,
                                            assess_as_of=READINESS)
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
    # 6 gaps from the faults and the missing classification, + 3 Art. 50 gaps: whether the
    # unclassified agent triggers Art. 50 is unknown (catalog 2026.11-3).
    assert first.summary["gap"] == 9 and first.diff["previous_report"] is None

    # Fix both: decisions logged (and received), the refund tool filed as a payment.
    with django_capture_on_commit_callbacks(execute=True):
        bundle_services.update_environment(d.environment, by=d.admin, decision_logging=True)
        policy_services.update_tool(Tool.objects.get(name="stripe_refund"), by=d.admin, category="payment")
    receive_decision(d.environment)
    d.refresh()
    with django_capture_on_commit_callbacks(execute=True):
        second = services.request_gap_report(framework="eu_ai_act", environment=d.environment, by=d.admin,
                                             assess_as_of=READINESS)
    second.refresh_from_db()
    assert second.status == ReportStatus.DONE, second.error
    statuses = results_of(second)
    assert {c: statuses[c] for c in FIXED} == FIXED
    assert {c: statuses[c] for c in STEADY} == STEADY

    diff = second.diff
    assert diff["previous_report"] == str(first.pk)
    assert {c["control_id"]: (c["from"], c["to"]) for c in diff["improved"]} == {
        c: (BROKEN[c], FIXED[c]) for c in BROKEN if BROKEN[c] != FIXED[c]
    }
    assert diff["regressed"] == []
    assert diff["unchanged"] == len(STEADY) + sum(1 for c in BROKEN if BROKEN[c] == FIXED[c])
    assert second.score > first.score and diff["score_change"] == round(second.score - first.score, 1)


def test_undoing_the_fix_is_listed_as_a_regression(deployment, build_inline, django_capture_on_commit_callbacks):
    d = deployment()
    with django_capture_on_commit_callbacks(execute=True):
        good = services.request_gap_report(framework="hipaa", environment=d.environment, by=d.admin)
    with django_capture_on_commit_callbacks(execute=True):
        bundle_services.update_environment(d.environment, by=d.admin, decision_logging=False)
    d.refresh()
    with django_capture_on_commit_callbacks(execute=True):
        bad = services.request_gap_report(framework="hipaa", environment=d.environment, by=d.admin)
    good.refresh_from_db(), bad.refresh_from_db()
    assert results_of(good)["164.312(b)"] == "met"
    assert results_of(bad)["164.312(b)"] == "partial"
    assert {"control_id": "164.312(b)", "from": "met", "to": "partial"} in bad.diff["regressed"]
    assert bad.diff["improved"] == []
    assert any(n["kind"] == "regression" and n["control_id"] == "164.312(b)" for n in bad.diff["notices"])


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
    assert "classified high-risk" in report.results.get(control_id="art14(4)(e)").applicability
    assert statuses["art4"] == "manual" and statuses["art50(1)"] == "gap"  # unclassified: trigger unknown
    high_risk = [c for c in get_framework("eu_ai_act").controls if c.applies_to in ("high_risk",
                                                                                              "gpai_provider")]
    assert report.summary["not_applicable"] == len(high_risk)
