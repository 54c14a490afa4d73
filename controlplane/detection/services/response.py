"""Automatic response, opt-in per environment and risk tier: suspend the agent through the
kill switch (every engine denies it on its next bundle), or hold every action of it for a
person's approval until the alert is closed, and open an incident; each action recorded in
the change log as done by the detector."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from controlplane.bundles.models import Environment
from controlplane.changelog.models import ChangeAction
from controlplane.changelog.services import record_change, snapshot
from controlplane.core.exceptions import ConflictError, InvalidInput
from controlplane.core.signals import registry_changed
from controlplane.detection.models import (
    SEVERITY_RANK,
    Alert,
    HIPAARole,
    ResponseAction,
    ResponsePolicy,
    Severity,
)
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
    """Apply the automatic response the agent's environments opted into, if any: suspension
    when any of them asks for it, else a hold of every action for approval."""
    policies = policies_for(alert)
    if not policies:
        return alert
    by = detector_user()
    agent = alert.agent
    environments = sorted(p.environment for p in policies)
    if any(p.action == ResponseAction.SUSPEND for p in policies):
        if agent.status == AgentStatus.ACTIVE:
            reason = f"detector, alert {alert.pk}: {alert.summary}"[:500]
            identity_services.suspend_agent(agent, by=by, reason=reason)
            _record_response(alert, "suspend", environments=environments, by=by,
                             message=f"automatic response: suspended agent {agent.name}")
    elif agent.status == AgentStatus.ACTIVE and not alert.response:
        hold_for_approval(alert, environments=environments, by=by)
    hipaa_roles = [p.hipaa_role for p in policies if p.open_incident and p.hipaa_role != HIPAARole.NONE]
    if any(p.open_incident for p in policies):
        incident = open_incident_from_alert(alert, by=by, hipaa_role=hipaa_roles[0] if hipaa_roles else "none")
        if alert.response.get("action") in ACTION_TEXT and not alert.response.get("incident"):
            record_action(incident, text=ACTION_TEXT[alert.response["action"]].format(agent=agent.name), by=by)
            alert.response = {**alert.response, "incident": incident.pk}
            alert.save(update_fields=["response"])
    return alert


ACTION_TEXT = {
    "suspend": "agent {agent} suspended automatically (kill switch)",
    "require_approval": "every action of agent {agent} held for approval automatically until the alert is closed",
}


def hold_for_approval(alert: Alert, *, environments: list[str], by: Any) -> Alert:
    """Hold every action of the alert's agent for a person's approval in ``environments``
    until the alert is resolved or marked a false positive (approvals.rego, detector-hold).
    Delivered to the engines by the bundle rebuild after the transaction commits."""
    _record_response(alert, "require_approval", environments=environments, by=by,
                     message=f"automatic response: actions of agent {alert.agent.name} held for approval")
    announce_hold_change(alert, "held for approval")
    return alert


def _record_response(alert: Alert, action: str, *, environments: list[str], by: Any, message: str) -> None:
    before = snapshot(alert)
    alert.response = {"action": action, "environments": environments, "at": timezone.now().isoformat(),
                      "by": by.username}
    alert.save(update_fields=["response"])
    record_change(alert, action=ChangeAction.UPDATE, by=by, before=before, after=snapshot(alert), message=message)


def announce_hold_change(alert: Alert, what: str) -> None:
    reason = f"detector, alert {alert.pk}: agent {alert.agent.name} {what}"
    transaction.on_commit(lambda: registry_changed.send(sender=Alert, reason=reason))


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
                        enabled: bool = True, open_incident: bool = True, hipaa_role: str = HIPAARole.NONE,
                        action: str | None = None) -> ResponsePolicy:
    """Opt an environment in (or change its opt-in) to an automatic response for these tiers:
    suspension, or a hold of every action for approval."""
    if not Environment.objects.filter(name=environment).exists():
        raise InvalidInput(f"no environment named {environment!r}", field="environment")
    _check_policy(environment=environment, risk_tiers=risk_tiers, min_severity=min_severity, hipaa_role=hipaa_role)
    if action is None:
        action = "suspend"
    if action not in ResponseAction.values:
        raise InvalidInput(f"choose one of {', '.join(ResponseAction.values)}", field="action")
    policy = ResponsePolicy.objects.select_for_update().filter(environment=environment).first()
    before = snapshot(policy) if policy else None
    policy = policy or ResponsePolicy(environment=environment)
    policy.risk_tiers, policy.min_severity, policy.enabled = sorted(set(risk_tiers)), min_severity, enabled
    policy.open_incident, policy.hipaa_role, policy.action = open_incident, hipaa_role, action
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
