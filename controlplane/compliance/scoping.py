"""Writes of the scope a report assumes: per environment (EU role, SOC 2 categories, HIPAA
status, what is out of scope) and per agent (its classification as a person assessed it,
the models it uses, whether it handles ePHI)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from controlplane.bundles.models import Environment
from controlplane.changelog.models import ChangeAction
from controlplane.changelog.services import record_change, snapshot
from controlplane.compliance.attestations import clean_text
from controlplane.compliance.models import AgentClassification, ClassificationStatus, ComplianceScope, HighRiskRoute
from controlplane.core.exceptions import InvalidInput


@transaction.atomic
def update_scope(environment: Environment, *, by, **changes) -> ComplianceScope:
    scope, _ = ComplianceScope.objects.select_for_update().get_or_create(environment=environment)
    before = snapshot(scope)
    if "out_of_scope" in changes:
        changes["out_of_scope"] = clean_text(changes["out_of_scope"], "out_of_scope", required=False, max_length=5000)
    if "soc2_categories" in changes:
        changes["soc2_categories"] = sorted(set(changes["soc2_categories"]))
    for name, value in changes.items():
        setattr(scope, name, value)
    scope.updated_by = by
    scope.save()
    record_change(scope, action=ChangeAction.UPDATE, by=by, before=before, after=snapshot(scope),
                  message=f"compliance scope of {environment.name} updated")
    return scope


@transaction.atomic
def classify_agent(agent, *, by, **changes) -> AgentClassification:
    """Record an agent's classification. "assessed" needs a rationale and a route (and the
    Annex point or act for a high-risk route); the assessor and date are the caller and now."""
    classification, _ = AgentClassification.objects.select_for_update().get_or_create(agent=agent)
    before = snapshot(classification)
    for name in ("rationale", "annex_reference"):
        if name in changes:
            changes[name] = clean_text(changes[name], name, required=False,
                                       max_length=10000 if name == "rationale" else 100)
    if "models_used" in changes:
        changes["models_used"] = [
            {key: clean_text(model.get(key), f"models_used.{key}", max_length=100)
             for key in ("provider", "model", "version")}
            for model in changes["models_used"]
        ]
    for name, value in changes.items():
        setattr(classification, name, value)
    if classification.status == ClassificationStatus.ASSESSED:
        if not classification.rationale:
            raise InvalidInput("an assessed classification needs the assessor's rationale", field="rationale")
        if "high_risk_route" not in changes and before.get("status") != ClassificationStatus.ASSESSED:
            raise InvalidInput("state the high-risk route (none, annex_iii or annex_i) when assessing",
                               field="high_risk_route")
        if classification.high_risk_route != HighRiskRoute.NONE and not classification.annex_reference:
            raise InvalidInput("name the Annex III point (e.g. 4(a)) or the Annex I act", field="annex_reference")
        classification.assessed_by, classification.assessed_at = by, timezone.now()
    else:
        classification.assessed_by, classification.assessed_at = None, None
    classification.save()
    record_change(classification, action=ChangeAction.UPDATE, by=by, before=before, after=snapshot(classification),
                  message=f"classification of {agent.name}: {classification.status}")
    return classification
