"""Evidence from each real agent's configuration and from the change log of access: egress
and shell allowlists (read per agent and probed per agent against the active bundle, never
a synthetic agent alone), the external destinations agents can reach, and who changed
access rights when."""

from __future__ import annotations

from django.db.models import Q

from controlplane.changelog.models import ObjectChange
from controlplane.compliance.collectors.registry import collector
from controlplane.compliance.collectors.policy import _bundle_ref, _no_bundle
from controlplane.compliance.collectors.probes import NETWORK_TOOL, PROBE_HOST, SHELL_TOOL
from controlplane.compliance.evidence import GAP, MET, NOT_TESTED, PARTIAL, Evidence, ObjectRef, ref
from controlplane.policies.models import ToolCategory

# Host globs that match any host: an allowlist holding one allows everything.
_ANY_HOST = frozenset({"*", "**", "*.*", "**.*", "*.**", "**.**"})
# Programs that run arbitrary code: allowlisting one is allowlisting every command.
INTERPRETERS = frozenset({
    "bash", "sh", "zsh", "dash", "ksh", "fish", "csh", "tcsh", "python", "python2", "python3", "node", "deno",
    "perl", "ruby", "php", "lua", "pwsh", "powershell", "env", "xargs", "busybox", "awk", "osascript",
})


def _interpreter(entry: str) -> bool:
    program = entry.strip().split(" ")[0].rsplit("/", 1)[-1]
    return program in INTERPRETERS or program.startswith(("python3.", "python2."))


def _probe_agents(context):
    """The live agents the active bundle knows (only those can be probed as themselves)."""
    known = set((context.bundle_registry.get("agents") or {}).keys())
    return [a for a in context.live_agents if a.name in known], [a for a in context.live_agents if a.name not in known]


@collector("egress_allowlist")
def egress_allowlist(context) -> Evidence:
    """Every live agent's egress allowlist is specific (no `*`/`**`), and the active bundle,
    asked as that agent, denies a host off its list."""
    kind = "egress_allowlist"
    if context.bundle is None:
        return _no_bundle(kind, context)
    live = context.live_agents
    population = f"live agents of {context.environment.name}"
    if not live:
        return Evidence(kind, NOT_TESTED, f"No agent runs in {context.environment.name}: no allowlist to test.",
                        [_bundle_ref(context)], population=population, population_size=0)
    probed, unknown = _probe_agents(context)
    probes = [context.probe.trial(NETWORK_TOOL, {"url": f"https://{PROBE_HOST}/"}, agent=a.name) for a in probed]
    open_agents = [a for a in live if set(a.egress_allow_hosts or []) & _ANY_HOST]
    allowed = [a for a, p in zip(probed, probes) if p["effect"] == "allow"]
    objects = [_bundle_ref(context)] + [
        ref(a, detail=f"allow_hosts: {', '.join(a.egress_allow_hosts) or 'none'}") for a in live
    ]
    missing = [f"{a.name} may reach any host (allow_hosts: {', '.join(a.egress_allow_hosts)})" for a in open_agents]
    missing += [f"the bundle allows {a.name} to reach {PROBE_HOST}, a host on no allowlist" for a in allowed
                if a not in open_agents]
    missing += [f"{a.name} is not in the active bundle's registry: publish again to enforce its allowlist"
                for a in unknown]
    contradictions = [f"{a.name}: allow_hosts {', '.join(a.egress_allow_hosts)} lets it reach any host"
                      for a in open_agents]
    figures = {"agents": len(live), "agents_allowing_any_host": len(open_agents), "probed": len(probed),
               "probes_allowed_off_list": len(allowed)}
    fix = ("Replace wildcard egress entries with the hosts each agent needs (PATCH /api/v1/agents/{name}/ "
           "egress_allow_hosts), then publish the environment's policies again.")
    if open_agents or allowed:
        status = GAP if len(set(open_agents + allowed)) == len(live) else PARTIAL
        return Evidence(kind, status, f"{len(set(open_agents + allowed))} of {len(live)} agent(s) can reach hosts "
                        "off any specific allowlist.", objects, missing, fix, figures, population=population,
                        population_size=len(live), probes=probes, contradictions=contradictions)
    if unknown:
        return Evidence(kind, PARTIAL, f"{len(probed)} of {len(live)} agent(s) probed: hosts off their allowlist "
                        "are denied.", objects, missing, "Publish the environment's policies again.", figures,
                        population=population, population_size=len(live), probes=probes)
    return Evidence(kind, MET, f"Each of {len(live)} agent(s) has a specific allowlist, and the bundle denies each a "
                    f"host off it ({', '.join(sorted({r for p in probes for r in p['rules']}))}).", objects,
                    figures=figures, population=population, population_size=len(live), probes=probes)


@collector("sandbox")
def sandbox(context) -> Evidence:
    """Shell allowlists name no interpreter (bash, sh, python… run anything), the bundle
    denies each agent an interpreter call, and OS isolation is attested (outside Warden)."""
    kind = "sandbox"
    if context.bundle is None:
        return _no_bundle(kind, context)
    live = context.live_agents
    population = f"live agents of {context.environment.name}"
    if not live:
        return Evidence(kind, NOT_TESTED, f"No agent runs in {context.environment.name}: no shell allowlist to "
                        "test.", [_bundle_ref(context)], population=population, population_size=0)
    probed, _ = _probe_agents(context)
    probes = [context.probe.trial(SHELL_TOOL, {"command": "sh -c id"}, agent=a.name) for a in probed]
    risky = {a.name: [e for e in (a.shell_allow_commands or []) if _interpreter(e)] for a in live}
    risky = {name: entries for name, entries in risky.items() if entries}
    allowed = [a.name for a, p in zip(probed, probes) if p["effect"] == "allow"]
    objects = [_bundle_ref(context)] + [
        ref(a, detail=f"allow_commands: {', '.join(a.shell_allow_commands) or 'none'}") for a in live
    ]
    missing = [f"{name} allowlists interpreter(s) {', '.join(entries)}, which run any code"
               for name, entries in risky.items()]
    missing += [f"the bundle lets {name} run `sh -c id`" for name in allowed if name not in risky]
    figures = {"agents": len(live), "agents_with_interpreters": len(risky), "probed": len(probed)}
    if risky or allowed:
        return Evidence(kind, GAP, f"{len(set(risky) | set(allowed))} agent(s) may run an interpreter, so their "
                        "shell allowlist does not limit what they execute.", objects, missing,
                        "Remove interpreters from shell_allow_commands; allow exact commands instead, and run code "
                        "execution in an OS-level sandbox.", figures, population=population,
                        population_size=len(live), probes=probes,
                        contradictions=[f"{n}: shell allowlist holds {', '.join(e)}" for n, e in risky.items()])
    return Evidence(kind, PARTIAL, f"No agent's shell allowlist names an interpreter; the bundle denies each probed "
                    f"agent `sh -c id`. OS-level isolation is not visible to Warden.", objects,
                    ["attestation that code and shell execution run in an OS-level sandbox"],
                    "Attest the sandbox (container, gVisor, Firecracker…) that runs agents' code execution.", figures,
                    population=population, population_size=len(live), probes=probes)


@collector("external_destinations")
def external_destinations(context) -> Evidence:
    """The inventory of external destinations agents can send data to — egress allowlists,
    network and e-mail tools in the catalog, and the model providers agents use — for
    business-associate contracts and disclosure records. A wildcard makes it unknowable."""
    kind = "external_destinations"
    live = context.live_agents
    population = f"external destinations reachable by {context.environment.name}'s live agents"
    destinations: dict[str, set[str]] = {}
    for agent in live:
        for host in agent.egress_allow_hosts or []:
            destinations.setdefault(f"host {host}", set()).add(agent.name)
        classification = context.classifications.get(agent.pk)
        for model in getattr(classification, "models_used", None) or []:
            if isinstance(model, dict) and model.get("provider"):
                destinations.setdefault(f"model provider {model['provider']}", set()).add(agent.name)
    scoped = {s for a in live for s in a.scopes or []}
    outbound_tools = [t for t in context.tools if t.category in (ToolCategory.NETWORK, ToolCategory.EMAIL)
                      and (not t.scopes or set(t.scopes) & scoped)]
    for tool in outbound_tools:
        destinations.setdefault(f"{tool.category} tool {tool.name}", set())
    objects = [ObjectRef("compliance.destination", name, name, f"used by {', '.join(sorted(agents)) or 'any agent with its scope'}")
               for name, agents in sorted(destinations.items())]
    wildcard = sorted(name for name in destinations if name.startswith("host ") and name[5:] in _ANY_HOST)
    figures = {"destinations": len(destinations), "wildcards": len(wildcard), "outbound_tools": len(outbound_tools)}
    if not live:
        return Evidence(kind, NOT_TESTED, "No agent runs in the environment.", objects, figures=figures,
                        population=population, population_size=0)
    if wildcard:
        return Evidence(kind, GAP, "Some agents may reach any host, so the destinations receiving data cannot be "
                        "inventoried.", objects, [f"{d} (used by {', '.join(sorted(destinations[d]))})" for d in wildcard],
                        "Replace wildcard egress entries with named hosts, then sign a BAA (HIPAA) or record the "
                        "disclosure basis for each destination.", figures, population=population,
                        population_size=len(destinations))
    return Evidence(kind, MET, f"{len(destinations)} external destination(s) inventoried from allowlists, outbound "
                    "tools and model providers; contracts for each are attested separately.", objects,
                    figures=figures, population=population, population_size=len(destinations))


# Objects whose changes are changes of access rights.
_ACCESS_TYPES = (("identity", "agent"), ("identity", "agentkey"), ("auth", "user"), ("auth", "group"),
                 ("accounts", "apitoken"), ("bundles", "environmenttoken"))


@collector("access_change_log")
def access_change_log(context) -> Evidence:
    """Changes of access rights in the period (the environment's agents and their keys;
    people, roles and API tokens), each with who and when. Warden has no approval record for
    access changes yet, so this is at most partial."""
    kind = "access_change_log"
    agent_ids = [str(pk) for pk in context.agent_ids]
    key_ids = [k for a in context.agents for k in a.keys.values_list("key_id", flat=True)]
    by_type = Q()
    for app_label, model in _ACCESS_TYPES:
        by_type |= Q(object_type__app_label=app_label, object_type__model=model)
    changes = ObjectChange.objects.filter(by_type, time__gte=context.period_start, time__lt=context.period_end)
    # Agents and keys of other environments are not this environment's access.
    changes = changes.exclude(Q(object_type__model="agent") & ~Q(object_id__in=agent_ids)).exclude(
        Q(object_type__model="agentkey") & ~Q(object_id__in=key_ids))
    rows = list(changes.select_related("object_type").order_by("-time")[:5000])
    anonymous = [c for c in rows if not c.user_id]
    objects = [ref(c, label=f"{c.action} {c.object_type.model} {c.object_repr}",
                   detail=f"by {c.user_name or 'nobody'} at {c.time:%Y-%m-%d %H:%M} UTC") for c in rows]
    population = f"changes of access rights affecting {context.environment.name} in the period"
    figures = {"changes": len(rows), "without_person": len(anonymous)}
    if not rows:
        return Evidence(kind, NOT_TESTED, "No access right changed in the period.", objects, figures=figures,
                        population=population, population_size=0)
    missing = [f"{c.action} of {c.object_repr} at {c.time:%Y-%m-%d %H:%M} has no person" for c in anonymous[:20]]
    missing.append("an approval by a second person for each access change (Warden records who and when, "
                   "not an approval)")
    return Evidence(kind, PARTIAL, f"{len(rows)} access change(s) in the period, {len(rows) - len(anonymous)} "
                    "with the person who made them.", objects, missing,
                    "Route access changes through an approval and attest the periodic access review.", figures,
                    population=population, population_size=len(rows))
