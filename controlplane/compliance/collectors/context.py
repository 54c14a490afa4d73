"""Facts several collectors need, computed once per report: the environment's agents, its
active bundle and rules, a compiled copy of its policies for probing, and SQL aggregates
over the audit log for the period."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from controlplane.audit.models import AuditEvent, QuarantinedRecord
from controlplane.bundles import archive
from controlplane.bundles.models import Environment
from controlplane.compliance.catalog import Framework
from controlplane.compliance.rules import RuleInfo, parse_rules, policy_files_for
from controlplane.identity.models import Agent, AgentStatus
from controlplane.policies.models import Tool


@dataclass
class ReportContext:
    framework: Framework
    environment: Environment
    period_start: datetime
    period_end: datetime
    categories: tuple[str, ...] = ("security",)

    @cached_property
    def now(self) -> datetime:
        return timezone.now()

    @cached_property
    def scope(self):
        """The environment's declared scope (None: nothing declared, defaults assumed)."""
        from controlplane.compliance.models import ComplianceScope

        return ComplianceScope.objects.filter(environment=self.environment).first()

    @cached_property
    def classifications(self) -> dict:
        """Each agent's classification by agent pk (agents without one are unreviewed)."""
        from controlplane.compliance.models import AgentClassification

        return {c.agent_id: c for c in AgentClassification.objects.select_related("assessed_by")
                .filter(agent_id__in=self.agent_ids)}

    def high_risk_route(self, agent) -> str | None:
        """"annex_iii" / "annex_i" for a high-risk agent, None otherwise. An agent whose
        classification was not assessed but whose registry tier is high counts as Annex III
        (the earlier date) until someone assesses it."""
        classification = self.classifications.get(agent.pk)
        if classification is not None and classification.status == "assessed":
            return None if classification.high_risk_route == "none" else classification.high_risk_route
        return "annex_iii" if agent.risk_tier == "high" else None

    @cached_property
    def agents(self) -> list[Agent]:
        """Agents that run in the environment (any status), with their active key counts."""
        candidates = Agent.objects.annotate(
            active_keys=Count("keys", filter=Q(keys__revoked_at__isnull=True))
        ).order_by("name")
        return [agent for agent in candidates if self.environment.name in (agent.environments or [])]

    @cached_property
    def live_agents(self) -> list[Agent]:
        return [a for a in self.agents if a.status != AgentStatus.REVOKED]

    @cached_property
    def agent_ids(self) -> list:
        return [a.pk for a in self.agents]

    @cached_property
    def high_risk_agents(self) -> list[Agent]:
        return [a for a in self.live_agents if self.high_risk_route(a)]

    @cached_property
    def scope_facts(self):
        from controlplane.compliance.assessment import ScopeFacts

        scope = self.scope
        routes: dict[str, list[str]] = {}
        for agent in self.high_risk_agents:
            routes.setdefault(self.high_risk_route(agent), []).append(agent.name)
        unassessed = [a.name for a in self.high_risk_agents
                      if getattr(self.classifications.get(a.pk), "status", "unreviewed") != "assessed"]
        return ScopeFacts(
            environment=self.environment.name,
            eu_role=scope.eu_role if scope else "",
            gpai_model_provider=bool(scope and scope.gpai_model_provider),
            soc2_categories=self.categories,
            hipaa_entity=scope.hipaa_entity if scope else "",
            high_risk_routes=routes,
            unassessed_high_risk=unassessed,
        )

    @cached_property
    def bundle(self):
        return self.environment.active_bundle

    @cached_property
    def policy_files(self) -> dict[str, str]:
        return policy_files_for(self.environment)[0] if self.bundle else {}

    @cached_property
    def rules(self) -> list[RuleInfo]:
        return parse_rules(self.policy_files)

    @cached_property
    def bundle_registry(self) -> dict:
        """data.warden_registry exactly as the active bundle carries it."""
        if self.bundle is None:
            return {}
        files = archive.read_tar_gz(bytes(self.bundle.archive))
        return json.loads(files.get("data.json", b"{}")).get("warden_registry", {})

    @cached_property
    def bundle_files(self) -> set[str]:
        if self.bundle is None:
            return set()
        return set(archive.read_tar_gz(bytes(self.bundle.archive)))

    @cached_property
    def probe(self):
        """A compiled copy of the active bundle (policies + data) to ask what it decides."""
        from controlplane.compliance.collectors.probes import PolicyProbe

        if self.bundle is None:
            return None
        return PolicyProbe(self.policy_files, self.bundle_registry, environment=self.environment.name)

    @cached_property
    def tools(self) -> list[Tool]:
        return list(Tool.objects.order_by("name"))

    @cached_property
    def high_risk_results(self):
        from controlplane.compliance.collectors.probes import probe_high_risk_tools

        if self.probe is None:
            return []
        return probe_high_risk_tools(self.probe, self.tools, self.bundle_registry)

    @cached_property
    def event_stats(self) -> dict:
        """One pass over the period's events of the environment's agents: counts by kind
        and how many had fields masked. Uses the time index; nothing leaves SQL but numbers."""
        events = AuditEvent.objects.filter(
            agent_id__in=self.agent_ids, time__gte=self.period_start, time__lt=self.period_end
        )
        stats = events.aggregate(
            total=Count("id"),
            decisions=Count("id", filter=Q(kind="decision")),
            masked=Count("id", filter=~Q(masked_paths=[])),
            first=Min("time"),
            last=Max("time"),
        )
        stats["by_agent"] = {
            row["agent_id"]: row["n"]
            for row in events.order_by().values("agent_id").annotate(n=Count("id"))
        }
        quarantined = QuarantinedRecord.objects.filter(
            agent_id__in=self.agent_ids, quarantined_at__gte=self.period_start, quarantined_at__lt=self.period_end
        )
        stats["quarantined"] = {
            row["reason"]: row["n"] for row in quarantined.order_by().values("reason").annotate(n=Count("id"))
        }
        return stats
