"""Art. 50 transparency evidence: an unclassified agent is a gap (whether it triggers Art. 50
is unknown), a declared trigger with no rule naming the paragraph is a gap, a rule that never
applied is partial, and decisions on the declared agent citing the rule make the evidence met;
the control itself keeps `manual`, so it is met only with an attestation.

The context's rules are parsed (the real METADATA parser) from a Rego source rather than
published in a signed bundle, which costs seconds; the bundle path is covered in test_api."""

import uuid

import pytest
from django.utils import timezone

from controlplane.compliance.assessment import assess_control
from controlplane.compliance.catalog import framework
from controlplane.compliance.collectors import collect
from controlplane.compliance.models import AgentClassification
from controlplane.compliance.rules import parse_rules
from controlplane.opa.models import DecisionLog
from tests.bundles.factories import EnvironmentFactory
from tests.compliance.test_collectors import context_for
from tests.identity.factories import AgentFactory

pytestmark = pytest.mark.django_db

REGO = '''package org.disclosure

# METADATA
# title: Chat replies must carry the AI disclosure
# custom:
#   controls: [eu_ai_act.art50(1)]
deny contains {"rule": "org.ai_disclosure", "message": "reply without AI disclosure"} if {
\tinput.action.tool == "chat_reply"
\tnot input.action.args.ai_disclosure
}
'''


def decision(env, agent, reasons):
    return DecisionLog.objects.create(
        decision_id=str(uuid.uuid4()), environment=env, path="warden/decision",
        input={"agent": {"name": agent.name}, "action": {"tool": "chat_reply"}},
        result={"allow": not reasons, "reasons": reasons}, timestamp=timezone.now(), event={})


def context(env, *, rules=True):
    ctx = context_for(env)
    ctx.__dict__["rules"] = parse_rules({"org/disclosure.rego": REGO}) if rules else []
    return ctx


def test_art50_interaction_evidence_follows_classification_rule_and_live_decisions():
    env = EnvironmentFactory(name="prod")
    bot = AgentFactory(name="support-bot", environments=["prod"])
    other = AgentFactory(name="batch-bot", environments=["prod"])
    AgentFactory(name="elsewhere-bot", environments=["dev"])  # another environment: not in the population

    unknown = collect("art50_interaction", context(env))
    assert unknown.status == "gap" and unknown.figures["agents_unreviewed"] == 2
    assert any("support-bot has no assessed classification" in m for m in unknown.missing)

    AgentClassification.objects.create(agent=other, status="assessed", rationale="Nightly batch, no people.")
    AgentClassification.objects.create(agent=bot, status="assessed", rationale="Answers customers.",
                                       art50_triggers=["interacts_with_persons"])
    assert collect("art50_interaction", context(env, rules=False)).status == "gap"  # declared, not enforced
    assert collect("art50_synthetic", context(env)).status == "not_tested"  # nobody declares that trigger

    decision(env, bot, [{"rule": "org.other", "message": "x"}])  # a decision, not citing the rule
    decision(env, other, [{"rule": "org.ai_disclosure", "message": "x"}])  # cites it, but not a declared agent
    designed = collect("art50_interaction", context(env))
    assert designed.status == "partial" and designed.figures["decisions_applying_rule"] == 0
    assert designed.figures["rules"] == ["org.ai_disclosure"] and designed.population_size == 1

    decision(env, bot, [{"rule": "org.ai_disclosure", "message": "reply without AI disclosure"}])
    operating = collect("art50_interaction", context(env))
    assert operating.status == "met" and operating.figures["decisions_applying_rule"] == 1

    # The control keeps its manual part: met evidence alone makes it partial, not met.
    control = next(c for c in framework("eu_ai_act").controls if c.id == "art50(1)")
    assert list(control.evidence) == ["art50_interaction", "manual"]
    result = assess_control(control, {"art50_interaction": operating}, applicable=True, reason="", rules=[],
                            attestations=[])
    assert result["status"] == "partial"


def test_kill_switch_drill_time_to_deny_is_measured_from_engine_decision_logs():
    """A suspension through the identity service, then the engine's decisions on that agent
    uploaded through the real decision-log ingestion: the first deny 4.5 s after the switch is
    the time-to-deny; an allow in between (a stale engine) is a contradiction, never "met"."""
    from datetime import timedelta

    from controlplane.changelog.models import ObjectChange
    from controlplane.compliance.collectors import drill
    from controlplane.identity import services as identity_services
    from controlplane.opa.services import ingest_decision_logs
    from tests.accounts.factories import UserFactory

    env = EnvironmentFactory(name="prod")
    admin = UserFactory(username="drill-admin", roles=["admin"])
    bot = AgentFactory(name="pay-bot", environments=["prod"])
    identity_services.suspend_agent(bot, by=admin, reason="quarterly drill")
    pulled = ObjectChange.objects.get(object_id=str(bot.pk), action="suspend").time

    def upload(after_s, allow, name="pay-bot"):
        return ingest_decision_logs(env, [{
            "decision_id": str(uuid.uuid4()), "path": "warden/decision", "labels": {"id": "opa-1"},
            "input": {"agent": {"name": name}}, "result": {"allow": allow, "reasons": []},
            "timestamp": (pulled + timedelta(seconds=after_s)).isoformat()}])

    upload(-3, True)  # before the switch: not part of the drill
    upload(4.5, False, name="other-bot")  # another agent: not this drill
    upload(4.5, False)
    upload(9, False)
    ctx = context_for(env)
    end = pulled + timedelta(hours=1)  # the uploads are timed after the switch, past "now"
    measured = drill.time_to_deny(env, list(ObjectChange.objects.filter(action="suspend")),
                                  {str(a.pk): a for a in ctx.agents}, end)
    assert measured["measured"] == 1 and measured["drills"][0]["time_to_deny_s"] == 4.5
    assert measured["max_s"] == 4.5 and measured["allowed_after_suspension"] == []

    upload(1.25, True)  # an engine still on the old bundle let it through
    measured = drill.time_to_deny(env, list(ObjectChange.objects.filter(action="suspend")),
                                  {str(a.pk): a for a in ctx.agents}, end)
    assert measured["drills"][0]["time_to_deny_s"] == 4.5
    assert len(measured["allowed_after_suspension"]) == 1
    assert "pay-bot was allowed 1.25 s after its suspension" in measured["allowed_after_suspension"][0]
