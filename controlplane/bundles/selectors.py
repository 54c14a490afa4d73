"""Reads for bundle building: the registry facts an environment's engines need."""

from __future__ import annotations

import hashlib

from controlplane.approvals.selectors import bundle_grants
from controlplane.audit import heads as audit_heads
from controlplane.bundles.models import Bundle, BundleActivation, Environment
from controlplane.delegation.selectors import delegation_registry_data
from controlplane.detection.selectors import held_agents
from controlplane.identity.models import Agent, AgentKey
from controlplane.policies.models import Tool


def registry_data(environment: Environment, *, agents=None) -> dict:
    """data.warden_registry for one environment: its agents (only those that run there),
    the tool catalog, and the environment's policy settings. See docs/policies.md.

    Bundle builds pass `agents`: a stand-in (a str iterating over the agent names) that
    controlplane.bundles.registry replaces with the agents' JSON, encoded incrementally.
    Add new keys here; use `agents` only by iterating over it (the names)."""
    if agents is None:
        agents = agent_registry(environment)
    tools = {}
    for tool in Tool.objects.order_by("name"):
        spec = {"scopes": sorted(tool.scopes), "category": tool.category, "irreversible": tool.irreversible}
        limits = {
            name: value
            for name, value in (("calls_per_minute", tool.calls_per_minute), ("calls_per_hour", tool.calls_per_hour))
            if value is not None
        }
        if limits:
            spec["rate_limits"] = limits
        if tool.sandbox_required:
            # shell.rego denies unsandboxed calls; agents_sdk.sandbox runs with this profile or the agent's.
            spec["sandbox"] = {"required": True, **({"profile": tool.sandbox_profile} if tool.sandbox_profile else {})}
        if tool.args_schema is not None:
            spec["args_schema"] = tool.args_schema  # args_schema.rego
        tools[tool.name] = spec
    return {
        **environment.policy_settings,
        "environment": environment.name,
        "agents": agents,
        "tools": tools,
        # Unconsumed grants of this environment, and the ids of consumed ones (approvals.rego).
        **bundle_grants(environment),
        # Keys, rules and revocations the engines verify delegation chains with.
        "delegation": delegation_registry_data(agents),
        # The signed audit head, so engines can tell a cut or rolled-back log (controlplane/audit/heads.py).
        **audit_heads.registry_entry(),
        # Agents an open alert holds for approval (approvals.rego), only when there are some.
        **({"held_agents": held} if (held := held_agents(environment.name)) else {}),
    }


def agent_registry(environment: Environment) -> dict:
    """data.warden_registry.agents as a dict. Bundle builds use controlplane.bundles.registry
    instead, which re-encodes only the agents that changed."""
    agents = {}
    keys: dict = {}
    for agent_id, key_id in AgentKey.objects.filter(revoked_at__isnull=True).values_list("agent_id", "key_id"):
        keys.setdefault(agent_id, []).append(key_id)
    for agent in Agent.objects.order_by("name"):
        if environment.name not in agent.environments:
            continue
        agents[agent.name] = {
            "status": agent.status,
            "owner": agent.owner_email,
            "team": agent.team,
            "risk_tier": agent.risk_tier,
            "scopes": sorted(agent.scopes),
            "key_ids": sorted(keys.get(agent.id, [])),
            "egress": {"allow_hosts": list(agent.egress_allow_hosts)},
            "shell": {"allow_commands": list(agent.shell_allow_commands)},
            # What agents_sdk.sandbox builds the agent's sandbox from ({} = no sandbox: refused).
            "sandbox": dict(agent.sandbox_profile),
        }
    return agents


def policy_digest(bundle: Bundle) -> str:
    """A hash of the bundle's policy files only, so bundles that differ in registry data alone
    compare equal."""
    policy = sorted((path, sha) for path, sha in bundle.files.items() if path.endswith(".rego"))
    return hashlib.sha256(repr(policy).encode("utf-8")).hexdigest()


def previous_policy_bundle(environment: Environment) -> Bundle | None:
    """The most recently active bundle whose policies differ from the active one's: what a
    rollback returns to. Activations caused only by registry changes are skipped."""
    active = environment.active_bundle
    if active is None:
        return None
    current = policy_digest(active)
    activations = BundleActivation.objects.filter(environment=environment).select_related("bundle")
    for activation in activations.iterator():
        if policy_digest(activation.bundle) != current:
            return activation.bundle
    return None


def built_at_of(bundle: Bundle | None) -> str:
    """The signed build time of `bundle` (manifest `metadata.warden.built_at`), "" if none."""
    if bundle is None:
        return ""
    return ((bundle.manifest.get("metadata") or {}).get("warden") or {}).get("built_at", "")


def delivery_report(agent=None) -> list[dict]:
    """Per environment (those `agent` runs in, or all), the revision engines must run to have
    the registry as it is now, its signed build time, and which engines run it according to
    their latest status reports (OPA instances and Warden sidecars alike)."""
    # Not the archives: megabytes each at 100,000 agents, on the kill switch's path.
    environments = (Environment.objects.exclude(active_bundle=None).select_related("active_bundle")
                    .defer("active_bundle__archive", "active_bundle__members"))
    report = []
    for environment in environments.order_by("position", "name"):
        if agent is not None and environment.name not in agent.environments:
            continue
        bundle = environment.active_bundle
        engines = [
            {
                "instance_id": instance.instance_id,
                "active_revision": instance.active_revision,
                "has_change": instance.active_revision == bundle.revision,
                "last_seen": instance.last_seen,
            }
            for instance in environment.opa_instances.order_by("instance_id")
        ]
        report.append(
            {
                "environment": environment.name,
                "revision": bundle.revision,
                "built_at": built_at_of(bundle),
                "engines_with_change": sum(engine["has_change"] for engine in engines),
                "engines": engines,
            }
        )
    return report
