"""EU AI Act Art. 50 transparency: the disclosure itself happens in the agent's user interface,
outside Warden, so telemetry can only support these controls (the catalog keeps `manual` next
to them: "met" still needs a person's attestation). What Warden can show is:

- the population: live agents whose assessed classification declares the trigger (an agent
  nobody classified may have it: that is a gap, not "no trigger");
- that the environment's active bundle has a rule whose METADATA names the paragraph
  (`custom.controls: [eu_ai_act.art50(1)]`), i.e. the obligation is enforced by policy;
- that the rule applied, live: decisions uploaded in the period on those agents whose
  reasons name it (one SQL count over the decision logs, JSON containment)."""

from __future__ import annotations

from django.db.models import Q

from controlplane.compliance.collectors.registry import collector
from controlplane.compliance.evidence import GAP, MET, NOT_TESTED, PARTIAL, Evidence, ObjectRef, ref
from controlplane.opa.models import DecisionLog

# evidence kind -> (classification trigger, control the rule must name, what is disclosed)
ART50 = {
    "art50_interaction": ("interacts_with_persons", "eu_ai_act.art50(1)",
                          "telling people they interact with an AI system"),
    "art50_synthetic": ("generates_synthetic_content", "eu_ai_act.art50(2)",
                        "marking synthetic output as AI-generated"),
    "art50_deep_fake": ("deep_fake", "eu_ai_act.art50(4)", "disclosing deep fakes as artificially generated"),
}


def _decisions_applying(context, agents, rule_ids) -> int:
    names = [a.name for a in agents]
    by_agent = Q(input__agent__name__in=names) | Q(input__agent__id__in=names)
    by_rule = Q()
    for rule_id in rule_ids:
        by_rule |= Q(result__reasons__contains=[{"rule": rule_id}])
    return DecisionLog.objects.filter(by_agent, by_rule, environment=context.environment,
                                      timestamp__gte=context.period_start, timestamp__lt=context.period_end).count()


def transparency(kind: str, context) -> Evidence:
    trigger, control, duty = ART50[kind]
    env = context.environment
    assessed = {pk: c for pk, c in context.classifications.items() if c.status == "assessed"}
    unreviewed = [a for a in context.live_agents if a.pk not in assessed]
    triggered = [a for a in context.live_agents if trigger in (getattr(assessed.get(a.pk), "art50_triggers", None) or [])]
    rules = [r for r in context.rules if control in r.controls]
    population = f"live agents of {env.name} whose assessed classification declares {trigger}"
    figures = {"trigger": trigger, "agents_declared": len(triggered), "agents_unreviewed": len(unreviewed),
               "rules": [r.id for r in rules]}
    objects = [ref(a, detail=f"declares {trigger}") for a in triggered]
    missing = [f"{a.name} has no assessed classification: whether it triggers Art. 50 is unknown"
               for a in unreviewed[:20]]
    classify = ("Classify every agent (PUT /api/v1/compliance/classifications/<agent>/) and list its Art. 50 "
                "triggers.")
    if not triggered:
        if unreviewed:
            return Evidence(kind, GAP, f"{len(unreviewed)} agent(s) of {env.name} are not classified: Warden cannot "
                            f"tell whether any needs {duty}.", [ref(a) for a in unreviewed[:25]], missing, classify,
                            figures, population=population, population_size=0)
        return Evidence(kind, NOT_TESTED, f"No agent of {env.name} declares {trigger}: no instance in the period.",
                        figures=figures, population=population, population_size=0)
    if not rules:
        return Evidence(kind, GAP, f"{len(triggered)} agent(s) declare {trigger}, and no rule of the active bundle "
                        f"names {control}: {duty} is not enforced by policy.", objects,
                        [f"an active rule whose METADATA names {control}", *missing],
                        f"Add a rule that denies {', '.join(a.name for a in triggered[:5])}'s outputs without the "
                        f"disclosure and annotate it `custom.controls: [{control}]`; then publish the bundle.",
                        figures, population=population, population_size=len(triggered))
    applied = _decisions_applying(context, triggered, [r.id for r in rules])
    figures["decisions_applying_rule"] = applied
    objects += [ObjectRef("policies.rule", r.id, r.title or r.id, f"{r.file}:{r.line}") for r in rules]
    if not applied:
        return Evidence(kind, PARTIAL, f"Rule(s) {', '.join(r.id for r in rules)} name {control}, but no decision on "
                        f"the {len(triggered)} declared agent(s) applied them in the period.", objects,
                        ["a decision in the period showing the rule applied", *missing],
                        "Check the declared agents send their outputs through the policy decision.", figures,
                        population=population, population_size=len(triggered))
    status = PARTIAL if unreviewed else MET
    return Evidence(kind, status, f"{len(triggered)} agent(s) declare {trigger}; rule(s) "
                    f"{', '.join(r.id for r in rules)} enforce {duty} and applied in {applied} decision(s) in the "
                    "period.", objects, missing, classify if unreviewed else "", figures, population=population,
                    population_size=len(triggered))


for _kind in ART50:
    collector(_kind)(lambda context, _kind=_kind: transparency(_kind, context))
