from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from controlplane.bundles import services as bundle_services
from controlplane.opa.models import DecisionLog
from controlplane.policies import services as policy_services
from tests.accounts.factories import UserFactory
from tests.identity.factories import AgentFactory


@pytest.fixture
def author(db):
    return UserFactory(username="risk-author", roles=["policy_author"])


@pytest.fixture
def reviewer(db):
    return UserFactory(username="second-reviewer", roles=["policy_author"])


@pytest.fixture
def finance_env(author):
    """A `finance` environment (not four-eyes) with a finance agent and the pay_invoice tool."""
    AgentFactory(name="finance-bot", team="finance", scopes=["payments:create"], environments=["finance", "prod"])
    policy_services.create_tool(name="pay_invoice", scopes=["payments:create"], category="other", by=author)
    return bundle_services.create_environment(name="finance", by=author)


def record_decisions(environment, inputs: list[dict]) -> None:
    """Decision logs as engines upload them (the result is not replayed, only the input)."""
    now = timezone.now()
    DecisionLog.objects.bulk_create([
        DecisionLog(
            decision_id=str(uuid.uuid4()), environment=environment, instance_id="opa-1", path="warden/decision",
            input=value, result={"allow": True, "effect": "allow"}, timestamp=now, event={},
        )
        for value in inputs
    ], batch_size=5000)


def payment(amount, agent: str = "finance-bot") -> dict:
    return {
        "agent": {"id": agent}, "action": {"type": "tool_call", "tool": "pay_invoice", "args": {"amount": amount, "currency": "EUR"}},
        "context": {"session_id": "s-1", "environment": "finance"},
    }
