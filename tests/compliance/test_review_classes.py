"""Each class of finding in the 2026-11 review, on real state: an empty environment is not
tested (not "met"), evidence is the environment's own, real agents' allowlists are read and
probed, read-only tools are not payment tools, approval rules without approval records are
only partial, high-risk dates follow the route, and entity-level criteria are capped."""

import datetime
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.bundles import services as bundle_services
from controlplane.compliance import assessment, attestations, services
from controlplane.compliance.catalog import framework
from controlplane.compliance.collectors import collect
from controlplane.compliance.collectors import policy as policy_collectors
from controlplane.compliance.collectors.probes import tool_risks
from controlplane.compliance.models import Attestation
from controlplane.identity import services as identity_services
from controlplane.policies.models import Tool
from tests.compliance.conftest import results_of
from tests.compliance.test_collectors import context_for

pytestmark = pytest.mark.django_db


def build(framework_id, environment, by, **kwargs):
    report = services.request_gap_report(framework=framework_id, environment=environment, by=by, **kwargs)
    services.build_gap_report(report.pk)
    report.refresh_from_db()
    assert report.status == "done", report.error
    return report


# -- empty population ---------------------------------------------------------------------------


def test_a_new_environment_without_agents_is_not_tested_not_met(deployment):
    d = deployment()
    empty = bundle_services.create_environment(name="sandbox-new", by=d.admin, position=5)
    bundle_services.publish_policies(empty, by=d.admin, message="first release")
    empty.refresh_from_db()
    for kind in ("agent_identity", "risk_classification", "egress_allowlist", "sandbox", "kill_switch",
                 "signed_audit_log", "external_destinations", "scoped_access", "model_inventory"):
        evidence = collect(kind, context_for(empty))
        assert evidence.status == "not_tested", (kind, evidence.status, evidence.summary)
        assert evidence.population_size == 0 and evidence.population, kind

    soc2 = build("soc2", empty, d.admin)
    statuses = results_of(soc2)
    # Each of these was "met" for an environment with nothing in it.
    for control in ("CC6.2", "CC6.6"):
        assert statuses[control] == "not_tested", control
    for control in ("CC1.3", "CC1.5", "CC3.2", "CC3.4", "CC5.3", "CC2.1"):
        assert statuses[control] != "met", control
    assert soc2.summary["not_tested"] >= 2
    assert soc2.summary["scored"] == soc2.summary["met"] + soc2.summary["partial"] + soc2.summary["gap"]
    hipaa = build("hipaa", empty, d.admin)
    hipaa_statuses = results_of(hipaa)
    assert hipaa_statuses["164.312(a)(2)(i)"] == "not_tested"
    assert hipaa_statuses["164.308(a)(2)"] != "met"
    production = build("hipaa", d.environment, d.admin)
    assert hipaa.summary["met"] < production.summary["met"] or hipaa.summary["met"] <= 3


def test_no_policy_change_in_the_period_is_not_tested(deployment):
    d = deployment()
    ctx = context_for(d.environment)
    ctx.period_start = timezone.now() + timedelta(seconds=0.5)  # a window with no revision in it
    evidence = collect("policy_change_control", ctx)
    assert evidence.status == "not_tested" and evidence.population == "policy revisions in the period"


# -- cross-environment evidence ----------------------------------------------------------------------


def test_kill_switch_counts_only_this_environments_agents(deployment):
    d = deployment()  # the fixture's drill suspended drill-bot, an agent of "dev", not of "prod"
    evidence = collect("kill_switch", context_for(d.environment))
    assert evidence.status == "partial"
    assert not any("drill-bot" in o.label for o in evidence.objects)
    assert evidence.figures["uses_in_period"] == 0
    identity_services.suspend_agent(d.agent, by=d.admin, reason="drill on prod")
    identity_services.resume_agent(d.agent, by=d.admin, reason="drill over")
    evidence = collect("kill_switch", context_for(d.environment))
    assert evidence.status == "met" and evidence.figures["uses_in_period"] == 1
    probe = evidence.probes[0]
    assert probe["input"]["agent"]["id"] == "warden-compliance-probe-suspended" and probe["effect"] == "deny"


# -- per-agent allowlists ------------------------------------------------------------------------------


def _set_agent(d, **fields):
    identity_services.update_agent(d.agent, by=d.admin, **fields)
    bundle_services.publish_policies(d.environment, by=d.admin, message="agent changed")
    d.environment.refresh_from_db()
    d.agent.refresh_from_db()


def test_a_real_agent_with_a_wildcard_egress_allowlist_is_a_gap_with_a_contradiction(deployment):
    d = deployment()
    _set_agent(d, egress_allow_hosts=["api.stripe.com"])
    specific = collect("egress_allowlist", context_for(d.environment))
    assert specific.status == "met", specific.missing
    assert [p["input"]["agent"]["id"] for p in specific.probes] == ["billing-bot"]
    assert specific.probes[0]["effect"] == "deny"

    _set_agent(d, egress_allow_hosts=["**"])
    evidence = collect("egress_allowlist", context_for(d.environment))
    assert evidence.status == "gap"
    assert "billing-bot may reach any host (allow_hosts: **)" in evidence.missing
    assert evidence.contradictions and evidence.probes[0]["effect"] == "allow"
    report = build("soc2", d.environment, d.admin)
    cc66 = report.results.get(control_id="CC6.6")
    assert cc66.status != "met" and cc66.contradictions
    destinations = collect("external_destinations", context_for(d.environment))
    assert destinations.status == "gap"


@pytest.mark.parametrize("entry", ["bash", "sh", "python3", "/usr/bin/python"])
def test_an_interpreter_in_a_shell_allowlist_is_a_gap(deployment, entry):
    d = deployment()
    _set_agent(d, shell_allow_commands=["git status"])
    assert collect("sandbox", context_for(d.environment)).status == "partial"
    _set_agent(d, shell_allow_commands=["git status", entry])
    evidence = collect("sandbox", context_for(d.environment))
    assert evidence.status == "gap"
    assert any(entry in m for m in evidence.missing)


# -- read-only tools and the payment heuristic -------------------------------------------------------------


def test_a_read_only_tool_is_never_a_payment_tool_by_name():
    settings = {}
    assert tool_risks(Tool(name="invoice_read", category="other", scopes=["read:invoices"]), settings)[0] == []
    assert tool_risks(Tool(name="refund_lookup", category="other", scopes=["read:refunds", "read:payments"]),
                      settings)[0] == []
    # A write scope, or an explicit category, still makes it one.
    assert tool_risks(Tool(name="invoice_pay", category="other", scopes=["read:invoices", "payments:create"]),
                      settings)[0] == ["payment (by name or scope)"]
    assert tool_risks(Tool(name="charge", category="payment", scopes=["read:cards"]), settings)[0] == ["payment"]


# -- approvals without records ---------------------------------------------------------------------


def test_approval_rules_without_approval_records_are_partial_then_met_with_decisions(deployment):
    d = deployment()
    evidence = collect("human_approval", context_for(d.environment))
    assert evidence.status == "partial"
    # The approvals app is the source (issue 14): no decision in the period yet.
    assert "no approval was decided in the period" in evidence.summary
    assert evidence.figures["approval_records"] == 0

    now = timezone.now()

    def decisions(context):
        return [policy_collectors.ApprovalRecord(id="a1", agent="billing-bot", requested_by="billing-bot",
                                                 decided_by="payments-owner", decided_at=now, outcome="granted")]

    policy_collectors.register_approval_source(decisions)
    try:
        evidence = collect("human_approval", context_for(d.environment))
        assert evidence.status == "met" and evidence.population_size == 1
    finally:
        policy_collectors.APPROVAL_SOURCES.remove(decisions)


# -- amended dates per route ----------------------------------------------------------------------------


def _facts(**routes):
    return assessment.ScopeFacts(environment="prod", high_risk_routes=routes)


@pytest.mark.parametrize("route,as_of,applies", [
    ("annex_iii", "2026-11-30", False), ("annex_iii", "2027-12-01", False), ("annex_iii", "2027-12-02", True),
    ("annex_i", "2027-12-02", False), ("annex_i", "2028-08-01", False), ("annex_i", "2028-08-02", True),
])
def test_high_risk_obligations_apply_from_their_routes_date(route, as_of, applies):
    art9 = framework("eu_ai_act").control("art9")
    ok, reason, dates = assessment.applicability(art9, _facts(**{route: ["billing-bot"]}),
                                                 as_of=datetime.date.fromisoformat(as_of))
    assert ok is applies, reason
    assert "Annex III: 2027-12-02" in dates and "Annex I: 2028-08-02" in dates
    if not applies:
        assert "Not yet in force" in reason


def test_art50_applies_from_august_2026_and_role_scopes_duties():
    eu = framework("eu_ai_act")
    facts = _facts()
    assert not assessment.applicability(eu.control("art50(1)"), facts, as_of=datetime.date(2026, 8, 1))[0]
    assert assessment.applicability(eu.control("art50(1)"), facts, as_of=datetime.date(2026, 8, 2))[0]
    facts.eu_role = "deployer"
    ok, reason, _ = assessment.applicability(eu.control("art50(1)"), facts, as_of=datetime.date(2026, 9, 1))
    assert not ok and "provider duty" in reason
    assert assessment.applicability(eu.control("art50(4)"), facts, as_of=datetime.date(2026, 9, 1))[0]


def test_the_eu_report_applies_high_risk_duties_only_from_the_route_date(deployment):
    d = deployment()  # billing-bot: registry tier high, never assessed -> Annex III assumed
    today = build("eu_ai_act", d.environment, d.admin)
    statuses = results_of(today)
    result = today.results.get(control_id="art14(4)(e)")
    assert statuses["art14(4)(e)"] == "not_applicable" and "2027-12-02" in result.applicability
    assert "Annex III: 2027-12-02" in result.applies_from
    readiness = build("eu_ai_act", d.environment, d.admin, assess_as_of=datetime.date(2027, 12, 2))
    assert results_of(readiness)["art14(4)(e)"] != "not_applicable"
    assert readiness.scope["assumed"]["unassessed_high_risk"] == ["billing-bot"]


# -- entity-level caps and attestations ------------------------------------------------------------------


def _attest(d, control_id, framework_id="soc2", **kwargs):
    now = timezone.now()
    return attestations.record_attestation(
        kind=kwargs.pop("kind", "attestation"), framework=framework_id, control_id=control_id,
        environment=d.environment, period_start=now - timedelta(days=100), period_end=now + timedelta(days=1),
        statement="Reviewed by the security committee.", owner=d.admin, by=d.admin,
        expires_at=now + timedelta(days=180), **kwargs)


def test_entity_level_criteria_are_at_most_partial_without_an_attestation(deployment):
    d = deployment()
    assert collect("agent_identity", context_for(d.environment)).status == "met"
    statuses = results_of(build("soc2", d.environment, d.admin))
    assert statuses["CC1.5"] == "partial", "agent owners only support accountability for internal control"
    _attest(d, "CC1.5")
    statuses = results_of(build("soc2", d.environment, d.admin))
    assert statuses["CC1.5"] == "met"


def test_a_review_control_is_met_only_with_a_current_attestation_and_turns_back_when_it_expires(deployment):
    d = deployment()
    control = "164.308(a)(1)(ii)(D)"  # "Review records of system activity"
    assert results_of(build("hipaa", d.environment, d.admin))[control] == "partial"
    item = _attest(d, control, "hipaa", document=b"%PDF-1.4 review minutes", document_name="minutes.pdf")
    report = build("hipaa", d.environment, d.admin)
    assert results_of(report)[control] == "met"
    assert report.results.get(control_id=control).attestations[0]["document_sha256"] == item.document_sha256
    Attestation.objects.filter(pk=item.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    report = build("hipaa", d.environment, d.admin)
    result = report.results.get(control_id=control)
    assert result.status == "partial"
    assert any("expired" in m for m in result.missing)
    assert {"control_id": control, "from": "met", "to": "partial"} in report.diff["regressed"]
    assert any(n["kind"] == "regression" and n["control_id"] == control for n in report.diff["notices"])


def test_epHI_integrity_controls_are_capped_with_a_scope_sentence(deployment):
    d = deployment()
    report = build("hipaa", d.environment, d.admin)
    for control in ("164.312(c)(1)", "164.312(c)(2)", "164.312(e)(2)(i)"):
        result = report.results.get(control_id=control)
        assert result.status != "met" and result.strength == "supports", control
        assert "ePHI contained in agent action records" in result.requirement or "ePHI in agent action" in \
            result.requirement


def test_soc2_categories_out_of_scope_are_not_applicable_and_not_scored(deployment):
    d = deployment()
    security_only = build("soc2", d.environment, d.admin)
    assert results_of(security_only)["A1.1"] == "not_applicable"
    assert results_of(security_only)["P6.2"] == "not_applicable"
    with_privacy = build("soc2", d.environment, d.admin, categories=["privacy"])
    assert with_privacy.categories == ["security", "privacy"]
    assert results_of(with_privacy)["P6.2"] != "not_applicable"
    assert results_of(with_privacy)["A1.1"] == "not_applicable"
