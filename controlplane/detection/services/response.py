"""Automatic response, opt-in per environment and risk tier: suspend the agent through the
kill switch (every engine denies it on its next bundle) and open an incident, each action
recorded in the change log as done by the detector."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from controlplane.bundles.models import Environment
from controlplane.changelog.models import ChangeAction
from controlplane.changelog.services import record_change, snapshot
from controlplane.core.exceptions import ConflictError, InvalidInput
from controlplane.detection.models import SEVERITY_RANK, Alert, HIPAARole, ResponsePolicy, Severity
from controlplane.detection.services.actors import detector_user
from controlplane.detection.services.incidents import open_incident_from_alert, record_action
from controlplane.identity import services as identity_services
from controlplane.identity.models import AgentStatus, RiskTier


def policies_for(alert: Alert) -> list[ResponsePolicy]:
    """The enabled policies of the agent's environments that cover its tier and the alert's severity."""
    agent = alert.agent
    candidates = ResponsePolicy.objects.filter(enabled=True, environment__in=agent.environments)
    return [
        p for p in candidates
        if agent.risk_tier in p.risk_tiers and SEVERITY_RANK[alert.severity] >= SEVERITY_RANK[p.min_severity]
    ]


@transaction.atomic
def respond_to_alert(alert: Alert) -> Alert:
    """Apply the automatic response the agent's environments opted into, if any."""
    policies = policies_for(alert)
    if not policies:
        return alert
    by = detector_user()
    agent = alert.agent
    reason = f"detector, alert {alert.pk}: {alert.summary}"[:500]
    if agent.status == AgentStatus.ACTIVE:
        before = snapshot(alert)
        identity_services.suspend_agent(agent, by=by, reason=reason)
        alert.response = {"action": "suspend", "environments": sorted(p.environment for p in policies),
                          "at": timezone.now().isoformat(), "by": by.username}
        alert.save(update_fields=["response"])
        record_change(alert, action=ChangeAction.UPDATE, by=by, before=before, after=snapshot(alert),
                      message=f"automatic response: suspended agent {agent.name}")
    hipaa_roles = [p.hipaa_role for p in policies if p.open_incident and p.hipaa_role != HIPAARole.NONE]
    if any(p.open_incident for p in policies):
        incident = open_incident_from_alert(alert, by=by, hipaa_role=hipaa_roles[0] if hipaa_roles else "none")
        if alert.response.get("action") == "suspend" and not alert.response.get("incident"):
            record_action(incident, text=f"agent {agent.name} suspended automatically (kill switch)", by=by)
            alert.response = {**alert.response, "incident": incident.pk}
            alert.save(update_fields=["response"])
    return alert


def _check_policy(*, environment: str, risk_tiers, min_severity: str, hipaa_role: str) -> None:
    if not isinstance(risk_tiers, list) or not risk_tiers:
        raise InvalidInput(f"list one or more of {', '.join(RiskTier.values)}", field="risk_tiers")
    for tier in risk_tiers:
        if tier not in RiskTier.values:
            raise InvalidInput(f"not a risk tier: use {', '.join(RiskTier.values)}", field="risk_tiers")
    if min_severity not in Severity.values:
        raise InvalidInput(f"choose one of {', '.join(Severity.values)}", field="min_severity")
    if hipaa_role not in HIPAARole.values:
        raise InvalidInput(f"choose one of {', '.join(HIPAARole.values)}", field="hipaa_role")


@transaction.atomic
def set_response_policy(*, environment: str, by, risk_tiers: list[str], min_severity: str = Severity.CRITICAL,
                        enabled: bool = True, open_incident: bool = True, hipaa_role: str = HIPAARole.NONE) -> ResponsePolicy:
    """Opt an environment in (or change its opt-in) to automatic suspension for these tiers."""
    if not Environment.objects.filter(name=environment).exists():
        raise InvalidInput(f"no environment named {environment!r}", field="environment")
    _check_policy(environment=environment, risk_tiers=risk_tiers, min_severity=min_severity, hipaa_role=hipaa_role)
    policy = ResponsePolicy.objects.select_for_update().filter(environment=environment).first()
    before = snapshot(policy) if policy else None
    policy = policy or ResponsePolicy(environment=environment)
    policy.risk_tiers, policy.min_severity, policy.enabled = sorted(set(risk_tiers)), min_severity, enabled
    policy.open_incident, policy.hipaa_role = open_incident, hipaa_role
    policy.save()
    record_change(policy, action=ChangeAction.UPDATE if before else ChangeAction.CREATE, by=by, before=before,
                  after=snapshot(policy))
    return policy


@transaction.atomic
def delete_response_policy(policy: ResponsePolicy, *, by) -> None:
    if policy.pk is None:
        raise ConflictError("the policy does not exist")
    record_change(policy, action=ChangeAction.DELETE, by=by, before=snapshot(policy))
    policy.delete()
