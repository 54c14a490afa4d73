"""Evidence from what the environment's active bundle enforces: high-risk tools gated,
approvals, scopes, the kill switch, egress and shell allowlists, masking, policy tests,
signatures and the change history of the policies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from controlplane.bundles.models import BundleActivation
from controlplane.changelog.models import ObjectChange
import controlplane.compliance.collectors.drill as drill
from controlplane.compliance.collectors.registry import collector
from controlplane.compliance.collectors.probes import NOOP_TOOL, SCOPED_TOOL, SUSPENDED_PROBE_AGENT, rule_ids
from controlplane.compliance.evidence import GAP, MET, NOT_TESTED, PARTIAL, Evidence, ObjectRef, ref
from controlplane.policies.models import PolicyRevision

NO_BUNDLE_FIX = "Publish policies to the environment (POST /api/v1/environments/{env}/publish/)."


def _no_bundle(kind: str, context) -> Evidence:
    env = context.environment.name
    return Evidence(
        kind, GAP, f"{env} has no active bundle: no policy is enforced there.",
        objects=[ref(context.environment)], missing=["an active, signed policy bundle"],
        remediation=NO_BUNDLE_FIX.format(env=env),
    )


def _bundle_ref(context) -> ObjectRef:
    bundle = context.bundle
    return ref(bundle, label=f"{context.environment.name}@{bundle.revision[:12]}")


def _rule_refs(context, predicate) -> list[ObjectRef]:
    return [
        ObjectRef("policy.rule", rule.id, rule.title, f"{rule.file}:{rule.line} ({rule.effect})")
        for rule in context.rules if predicate(rule)
    ]


def _probe_ref(probe) -> ObjectRef:
    rules = ", ".join(probe.rules) or "no rule"
    return ref(probe.tool, detail=f"{'/'.join(probe.risks)} → {probe.effect} ({rules})")


@collector("deny_rules_high_risk")
def deny_rules_high_risk(context) -> Evidence:
    """Every high-risk tool in the catalog is denied or held for approval by the active bundle."""
    kind = "deny_rules_high_risk"
    if context.bundle is None:
        return _no_bundle(kind, context)
    results = context.high_risk_results
    unknown_trial = context.probe.trial("warden-probe-unregistered-tool")
    fail_closed = unknown_trial["effect"] == "deny"
    probes = [p.as_probe() for p in results] + [unknown_trial]
    population = "high-risk tools in the catalog (by category, irreversibility, or name unless read-only)"
    objects = [_bundle_ref(context)] + [_probe_ref(p) for p in results]
    ungated = [p for p in results if p.effect == "allow"]
    unclear = [p for p in results if p.inconclusive]
    figures = {"high_risk_tools": len(results), "ungated": len(ungated), "fail_closed": fail_closed}
    missing, fixes = [], []
    for p in ungated:
        missing.append(f"{p.tool.name} ({'/'.join(p.risks)}) is allowed without approval or denial")
        fixes.append(_fix_for(p))
    if not fail_closed:
        missing.append("a call to an unregistered tool is not denied (the bundle does not fail closed)")
        fixes.append("Restore the library's default-deny and unknown-tool rules in the bundle.")
    if ungated or not fail_closed:
        return Evidence(kind, GAP, f"{len(ungated)} of {len(results)} high-risk tool(s) run without a person or a "
                        "deny rule in between.", objects, missing, " ".join(dict.fromkeys(fixes)), figures,
                        population=population, population_size=len(results), probes=probes)
    if unclear:
        return Evidence(kind, PARTIAL, "Some high-risk tools could not be probed conclusively.", objects,
                        [f"{p.tool.name}: refused only for {', '.join(p.rules) or 'no reason'}" for p in unclear],
                        "Check that these tools are in the bundle's registry data and that their scopes are valid.",
                        figures, population=population, population_size=len(results), probes=probes)
    summary = (f"All {len(results)} high-risk tool(s) are denied or held for approval; unknown tools are denied."
               if results else "No high-risk tool is in the catalog; unknown tools are denied (fail closed).")
    return Evidence(kind, MET, summary, objects, figures=figures, population=population,
                    population_size=len(results), probes=probes)


def _fix_for(probe) -> str:
    name = probe.tool.name
    by_name = next((r.split(" ")[0] for r in probe.risks if r.endswith("(by name or scope)")), None)
    if by_name:
        return (f"Tool {name} looks like a {by_name} tool but is in category '{probe.tool.category}': set its "
                f"category to '{by_name}' so the library's approval rule applies, or mark it irreversible, "
                f"or add an organisation rule requiring approval for it.")
    if "file_delete" in probe.risks:
        return (f"Add {name} to the environment's destructive_file_tools and make sure protected_paths lists "
                f"the paths to protect, so deletions there wait for approval.")
    if "database_delete" in probe.risks:
        return f"Mark tool {name} irreversible so its calls wait for approval, or deny it with an organisation rule."
    return f"Add an organisation rule that denies {name} or requires approval for it, or mark it irreversible."


@dataclass(frozen=True)
class ApprovalRecord:
    """One approval decision as the compliance report needs it, whatever app keeps it."""

    id: str
    agent: str
    requested_by: str
    decided_by: str
    decided_at: datetime
    outcome: str  # granted / refused / expired


# Sources of approval decisions: callables (context -> list[ApprovalRecord]) that return the
# decisions on the context's agents in its period. The approvals app (issue 14) registers one
# with `register_approval_source` in its AppConfig.ready(); with none registered, Warden has no
# way to grant an approval and human-approval evidence stays "designed, not operating".
APPROVAL_SOURCES: list[Callable] = []


def register_approval_source(source: Callable) -> Callable:
    if source not in APPROVAL_SOURCES:
        APPROVAL_SOURCES.append(source)
    return source


def _approval_records(context) -> list[ApprovalRecord] | None:
    if not APPROVAL_SOURCES:
        return None
    return [record for source in APPROVAL_SOURCES for record in source(context)]


@collector("human_approval")
def human_approval(context) -> Evidence:
    """Approval rules are active and irreversible actions wait for a person — and people
    actually decided approvals in the period. Rules without decision records show the
    design, not its operation: at most partial."""
    kind = "human_approval"
    if context.bundle is None:
        return _no_bundle(kind, context)
    approval_rules = _rule_refs(context, lambda r: r.effect == "require_approval")
    results = context.high_risk_results
    waiting = [p for p in results if p.effect == "require_approval"]
    ungated = [p for p in results if p.effect == "allow"]
    objects = [_bundle_ref(context)] + approval_rules + [_probe_ref(p) for p in results]
    records = _approval_records(context)
    decided = [r for r in records or [] if r.decided_by]
    self_approved = [r for r in decided if r.decided_by == r.requested_by]
    objects += [ObjectRef("approvals.decision", r.id, f"{r.outcome} for {r.agent}",
                          f"requested by {r.requested_by}, decided by {r.decided_by} at "
                          f"{r.decided_at:%Y-%m-%d %H:%M} UTC") for r in decided]
    figures = {"approval_rules": len(approval_rules), "tools_waiting_for_approval": len(waiting),
               "approval_records": None if records is None else len(records),
               "self_approved": len(self_approved)}
    probes = [p.as_probe() for p in results]
    population = "approval decisions on the environment's agents in the period"
    if not approval_rules:
        return Evidence(kind, GAP, "The active bundle has no rule that holds actions for approval.", objects,
                        ["rules that require human approval"],
                        "Publish the policy library's approval rules (warden/approvals.rego) to the environment.",
                        figures, probes=probes)
    if ungated:
        return Evidence(
            kind, GAP,
            f"{len(ungated)} high-risk tool(s) act without waiting for a person.", objects,
            [f"{p.tool.name} ({'/'.join(p.risks)}) does not wait for approval" for p in ungated],
            " ".join(dict.fromkeys(_fix_for(p) for p in ungated)), figures, probes=probes,
        )
    design = (f"{len(approval_rules)} approval rule(s) active; {len(waiting)} high-risk tool(s) wait for a "
              "person's approval, the rest are denied")
    if not decided:
        why = ("Warden has no approval workflow yet, so no approval can be granted or recorded"
               if records is None else "no approval was decided in the period")
        return Evidence(kind, PARTIAL, f"{design}. Designed, not shown operating: {why}.", objects,
                        ["approval requests and decisions in the period (approver other than requester, latency, "
                         "expiry)"],
                        "Decide approvals through Warden's approval workflow so each decision is recorded.", figures,
                        population=population, population_size=0, probes=probes)
    if self_approved:
        return Evidence(kind, PARTIAL, f"{design}; {len(self_approved)} approval(s) were decided by their "
                        "requester.", objects, [f"approval {r.id} was decided by its requester" for r in self_approved],
                        "Require an approver other than the requester.", figures, population=population,
                        population_size=len(decided), probes=probes)
    return Evidence(kind, MET, f"{design}; {len(decided)} approval(s) decided in the period, none by the "
                    "requester.", objects, figures=figures, population=population, population_size=len(decided),
                    probes=probes)


@collector("scoped_access")
def scoped_access(context) -> Evidence:
    """A call outside the agent's scopes, or to an unknown tool, is denied by the bundle."""
    kind = "scoped_access"
    if context.bundle is None:
        return _no_bundle(kind, context)
    scope_trial = context.probe.trial(SCOPED_TOOL)
    unknown_trial = context.probe.trial("warden-probe-unregistered-tool")
    missing_scope, unknown_tool = scope_trial["decision"], unknown_trial["decision"]
    objects = [_bundle_ref(context)] + [
        ref(a, detail=f"scopes: {', '.join(a.scopes) or 'none'}") for a in context.live_agents
    ]
    missing = []
    if missing_scope.get("effect") != "deny":
        missing.append("a call without the tool's scope is not denied")
    if unknown_tool.get("effect") != "deny":
        missing.append("a call to a tool missing from the catalog is not denied")
    figures = {"agents": len(context.live_agents), "scope_probe": rule_ids(missing_scope),
               "unknown_tool_probe": rule_ids(unknown_tool)}
    probes = [scope_trial, unknown_trial]
    population = f"live agents of {context.environment.name}"
    if missing:
        return Evidence(kind, GAP, "Agents can act outside their declared scopes.", objects, missing,
                        "Publish the policy library's scope rules (warden/scopes.rego) to the environment.", figures,
                        probes=probes, population=population, population_size=len(context.live_agents))
    if not context.live_agents:
        return Evidence(kind, NOT_TESTED, "The bundle denies out-of-scope calls, but no agent runs in "
                        f"{context.environment.name}.", objects, figures=figures, probes=probes,
                        population=population, population_size=0)
    return Evidence(kind, MET, f"Calls outside an agent's scopes ({', '.join(rule_ids(missing_scope))}) and to "
                    f"unknown tools are denied; {len(context.live_agents)} agent(s) with declared scopes.",
                    objects, figures=figures, probes=probes, population=population,
                    population_size=len(context.live_agents))


@collector("kill_switch")
def kill_switch(context) -> Evidence:
    """Suspended agents are denied by the bundle, and the switch was used in the period on
    this environment's agents (suspensions elsewhere prove nothing here)."""
    kind = "kill_switch"
    if context.bundle is None:
        return _no_bundle(kind, context)
    trial = context.probe.trial(NOOP_TOOL, agent=SUSPENDED_PROBE_AGENT)
    enforced = trial["effect"] == "deny"
    population = f"suspensions and revocations of {context.environment.name}'s agents in the period"
    uses = list(
        ObjectChange.objects.filter(
            object_type__app_label="identity", object_type__model="agent",
            object_id__in=[str(pk) for pk in context.agent_ids],
            action__in=["suspend", "revoke"], time__gte=context.period_start, time__lt=context.period_end,
        ).order_by("-time")[:500]
    )
    objects = [_bundle_ref(context)] + [
        ref(change, label=f"{change.action} {change.object_repr}", detail=f"by {change.user_name} at "
            f"{change.time:%Y-%m-%d %H:%M} UTC") for change in uses
    ]
    figures = {"denies_suspended_agents": enforced, "uses_in_period": len(uses),
               "suspended_agents": sum(1 for a in context.agents if a.status == "suspended")}
    # Drill time-to-deny, from the engines' decision logs (not only the probe's word).
    drills = drill.time_to_deny(context.environment, [u for u in uses if u.action == "suspend"],
                                {str(a.pk): a for a in context.agents}, context.period_end)
    figures["time_to_deny"] = {k: drills[k] for k in ("measured", "median_s", "max_s", "drills")}
    kw = {"population": population, "population_size": len(uses), "probes": [trial],
          "contradictions": drills["allowed_after_suspension"]}
    if not enforced:
        return Evidence(kind, GAP, "The active bundle does not deny a suspended agent.", objects,
                        ["policy denying suspended and revoked agents"],
                        "Publish the policy library's identity rules (warden/identity.rego) to the environment.",
                        figures, **kw)
    if not context.agents:
        return Evidence(kind, NOT_TESTED, f"Suspended agents are denied, but no agent runs in "
                        f"{context.environment.name}.", objects, figures=figures, **kw)
    if not uses:
        return Evidence(kind, PARTIAL, f"Suspended agents are denied, but none of {context.environment.name}'s "
                        "agents was suspended in the period.", objects, ["a use of the kill switch in the period"],
                        "Run a drill: suspend one of the environment's agents (POST /api/v1/agents/{name}/suspend/), "
                        "check it is denied, then resume it.", figures, **kw)
    measured = (f" Engines denied the suspended agent after a median {drills['median_s']} s (max {drills['max_s']} s) "
                f"in {drills['measured']} drill(s) measured from decision logs." if drills["measured"] else
                " No engine decision on a suspended agent followed a suspension: time-to-deny not measured.")
    if drills["allowed_after_suspension"]:
        return Evidence(kind, PARTIAL, f"Suspended agents are denied by the bundle, but an engine allowed a suspended "
                        f"agent after the switch was pulled.{measured}", objects,
                        ["every engine denying a suspended agent from its next decision"],
                        "Check the engines that allowed it run the environment's latest bundle (GET "
                        "/api/v1/environments/{name}/ engines) and shorten their bundle polling.", figures, **kw)
    return Evidence(kind, MET, f"Suspended agents are denied ({', '.join(trial['rules'])}); the switch was used "
                    f"{len(uses)} time(s) on the environment's agents in the period.{measured}", objects,
                    figures=figures, **kw)


@collector("masking")
def masking(context) -> Evidence:
    from controlplane.audit import conf as audit_conf

    kind = "masking"
    keys = sorted(audit_conf.sensitive_keys())
    mask_rules = _rule_refs(context, lambda r: r.effect == "mask" or "secret" in r.id or "card" in r.id)
    stats = context.event_stats
    figures = {"sensitive_keys": keys, "mask_rules": len(mask_rules), "events_with_masked_fields": stats["masked"],
               "events": stats["total"]}
    objects = [ObjectRef("setting", "WARDEN_AUDIT_SENSITIVE_KEYS", ", ".join(keys))] + mask_rules
    missing = []
    if not keys:
        missing.append("sensitive keys to mask before storage (WARDEN_AUDIT_SENSITIVE_KEYS is empty)")
    if context.bundle is not None and not mask_rules:
        missing.append("policy rules that mask secrets and card numbers in decisions")
    if not keys:
        return Evidence(kind, GAP, "No sensitive keys are masked before audit storage.", objects, missing,
                        "Set WARDEN_AUDIT_SENSITIVE_KEYS (or leave it unset for the default list).", figures)
    if missing:
        return Evidence(kind, PARTIAL, f"{len(keys)} sensitive key(s) masked before storage, but no masking rule "
                        "is active in the bundle.", objects, missing,
                        "Publish the policy library's sensitive-data rules (warden/sensitive_data.rego).", figures)
    return Evidence(kind, MET, f"{len(keys)} sensitive key(s) masked before storage; {len(mask_rules)} masking "
                    f"rule(s) active; {stats['masked']} event(s) in the period had fields masked.", objects,
                    figures=figures)


@collector("policy_tests")
def policy_tests(context) -> Evidence:
    kind = "policy_tests"
    if context.bundle is None:
        return _no_bundle(kind, context)
    bundle = context.bundle
    if bundle.tests_passed <= 0:
        return Evidence(kind, GAP, "The active bundle was built without passing policy tests.", [_bundle_ref(context)],
                        ["passing policy tests for the active bundle"],
                        f"Publish through POST /environments/{context.environment.name}/publish/, which runs the tests and refuses a "
                        "build on any failure.")
    return Evidence(kind, MET, f"The active bundle passed {bundle.tests_passed} policy test(s) before it was built.",
                    [_bundle_ref(context)], figures={"tests_passed": bundle.tests_passed})


@collector("bundle_signing")
def bundle_signing(context) -> Evidence:
    """The active bundle carries a signature, and engines are configured to require one."""
    from controlplane.opa.models import OPAInstance

    kind = "bundle_signing"
    if context.bundle is None:
        return _no_bundle(kind, context)
    bundle = context.bundle
    signed = ".signatures.json" in context.bundle_files or "/.signatures.json" in context.bundle_files
    objects = [_bundle_ref(context), ref(bundle.signing_key, detail=f"{bundle.signing_key.algorithm}")]
    instances = list(OPAInstance.objects.filter(environment=context.environment).order_by("-last_seen")[:20])
    stale = [i for i in instances if i.active_revision and i.active_revision != bundle.revision]
    objects += [ref(i, detail=f"runs {i.active_revision[:12] or 'nothing'}") for i in instances]
    figures = {"signed": signed, "engines": len(instances), "engines_on_other_revisions": len(stale)}
    if not signed:
        return Evidence(kind, GAP, "The active bundle has no .signatures.json.", objects, ["a bundle signature"],
                        "Rebuild the bundle through publish/promote, which always signs.", figures)
    if stale:
        return Evidence(kind, PARTIAL, f"The active bundle is signed with {bundle.signing_key_id}, but "
                        f"{len(stale)} engine(s) report another revision.", objects,
                        [f"engine {i.instance_id} runs {i.active_revision[:12]}" for i in stale],
                        "Check those engines can reach the bundle service and verify the signing key.", figures)
    return Evidence(kind, MET, f"The active bundle is signed (RS256, key {bundle.signing_key_id}); engines are "
                    "configured through discovery to refuse unsigned bundles.", objects, figures=figures)


@collector("policy_change_control")
def policy_change_control(context) -> Evidence:
    """Policy revisions in the period carry an author and a message, are in the change log,
    and reached the environment through an activation by someone other than their author."""
    kind = "policy_change_control"
    revisions = list(
        PolicyRevision.objects.select_related("module", "author")
        .filter(created_at__gte=context.period_start, created_at__lt=context.period_end).order_by("created_at")
    )
    activations = list(
        BundleActivation.objects.filter(environment=context.environment, activated_at__gte=context.period_start)
        .select_related("activated_by").order_by("activated_at")
    )
    unrecorded = [r for r in revisions if not r.author_id or not r.message.strip()]
    self_released = []
    for revision in revisions:
        released = next((a for a in activations if a.activated_at >= revision.created_at and a.activated_by_id), None)
        if released is not None and released.activated_by_id == revision.author_id:
            self_released.append(revision)
    logged = ObjectChange.objects.filter(
        Q(object_type__app_label="policies"), time__gte=context.period_start, time__lt=context.period_end
    ).count()
    objects = [
        ref(r, detail=f"by {getattr(r.author, 'username', 'unknown')}: {r.message or '(no message)'}")
        for r in revisions
    ] + [ref(a, label=f"activation {a.pk}", detail=a.reason) for a in activations[-10:]]
    figures = {"revisions": len(revisions), "without_author_or_message": len(unrecorded),
               "released_by_their_author": len(self_released), "policy_change_log_entries": logged,
               "activations": len(activations)}
    missing = [f"{r} has no {'author' if not r.author_id else 'message'}" for r in unrecorded]
    missing += [f"{r} was released by its own author (no second person)" for r in self_released]
    population = "policy revisions in the period"
    if not revisions:
        return Evidence(kind, NOT_TESTED, "No policy changed in the period (no instances to test); every earlier "
                        "revision is kept with its author and message.", objects, figures=figures,
                        population=population, population_size=0)
    if missing:
        return Evidence(kind, PARTIAL, f"{len(revisions)} policy revision(s) in the period; "
                        f"{len(unrecorded) + len(self_released)} lack a record or a second person.", objects, missing,
                        "Give every policy change a message, and let someone other than the author publish it "
                        "(Warden does not yet enforce a four-eyes review).", figures, population=population,
                        population_size=len(revisions))
    return Evidence(kind, MET, f"{len(revisions)} policy revision(s) in the period, each with author and message, "
                    "released by another person, and in the change log.", objects, figures=figures,
                    population=population, population_size=len(revisions))
