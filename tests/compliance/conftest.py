"""A deployment to report on, built through the real services: an environment with a
published (signed, tested) bundle, a tool catalog, a high-risk agent with a registered key
that shipped signed records (verified and checkpointed), a kill-switch drill, and people
with roles. `deployment(...)` takes the knobs the scenarios turn."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from django.utils import timezone

from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner, canonical_json
from controlplane.audit import checkpoints as audit_checkpoints
from controlplane.celery import app as celery_app
from controlplane.audit import ingestion as audit_ingestion
from controlplane.audit import verification as audit_verification
from controlplane.bundles import services as bundle_services
from controlplane.bundles.models import Environment
from controlplane.compliance import services, tasks
from controlplane.identity import services as identity_services
from controlplane.identity.models import Agent
from controlplane.opa.models import DecisionLog
from controlplane.policies import services as policy_services
from tests.accounts.factories import UserFactory
from tests.tasks_inline import tasks_run_inline


@pytest.fixture
def build_inline():
    """Reports are built in this process when the request commits (no broker involved)."""
    with tasks_run_inline():
        yield


@dataclass
class Deployment:
    admin: object
    environment: Environment
    agent: Agent
    identity: AgentIdentity

    def refresh(self) -> None:
        self.environment.refresh_from_db()


def ship_records(identity: AgentIdentity, agent: Agent, sessions: int = 2) -> None:
    """Signed records through the real ingestion and verification, then a checkpoint."""
    signer = ActionSigner(identity)
    records = []
    for n in range(sessions):
        with signer.session(session_id=f"s-{uuid.uuid4()}") as session:
            records += [
                session.intent("lookup", {"ticket": n, "api_key": "sk-live-123"}),
                session.decision("allow", reasons=[], obligations={"log": True}),
                session.result("ok"),
            ]
    body = b'{"records":[' + b",".join(canonical_json(r) for r in records) + b"]}"
    batch = audit_ingestion.ingest_batch(agent=agent, key_id=identity.key_id, body=body)
    audit_verification.verify_batch(batch.pk)
    audit_checkpoints.create_checkpoints()


def receive_decision(environment: Environment) -> DecisionLog:
    now = timezone.now()
    return DecisionLog.objects.create(
        decision_id=str(uuid.uuid4()), environment=environment, path="warden/decision",
        input={"agent": {"id": "billing-bot"}}, result={"allow": True}, timestamp=now, event={},
    )


@pytest.fixture
def deployment(db, django_capture_on_commit_callbacks):
    def make(*, decision_logging: bool = True, refund_category: str = "payment", name: str = "prod") -> Deployment:
        admin = UserFactory(username="compliance-admin", roles=["admin"])
        UserFactory(username="compliance-auditor", roles=["auditor"])
        # The agent's owner is a person with an account (agent_identity checks it).
        UserFactory(username="payments-owner", email="payments@example.com", roles=["approver"])
        with django_capture_on_commit_callbacks(execute=True):
            environment = bundle_services.create_environment(name=name, by=admin, position=2,
                                                             decision_logging=decision_logging)
            for tool in (
                {"name": "lookup", "scopes": ["read:tickets"], "category": "other"},
                {"name": "stripe_refund", "scopes": ["payments:refund"], "category": refund_category},
                {"name": "file_delete", "scopes": ["write:files"], "category": "file"},
                {"name": "email_send", "scopes": ["email:send"], "category": "email"},
                {"name": "db_drop_table", "scopes": ["db:write"], "category": "database", "irreversible": True},
            ):
                policy_services.create_tool(by=admin, **tool)
            identity = AgentIdentity.create("billing-bot", "payments@example.com", ["read:tickets"])
            agent = identity_services.register_agent(
                name="billing-bot", owner_email="payments@example.com", by=admin, risk_tier="high",
                environments=[name], team="payments", description="Refunds small card payments for support.",
                scopes=["read:tickets", "payments:refund"],
            )
            identity_services.add_agent_key(agent, public_key=identity.public_key_b64, by=admin)
            drill = identity_services.register_agent(name="drill-bot", owner_email="sre@example.com", by=admin,
                                                     environments=["dev"], team="sre", description="Kill-switch drills.")
            identity_services.suspend_agent(drill, by=admin, reason="quarterly kill-switch drill")
            identity_services.resume_agent(drill, by=admin, reason="drill over")
            bundle_services.publish_policies(environment, by=admin, message="first release")
        ship_records(identity, agent)
        if decision_logging:
            receive_decision(environment)
        environment.refresh_from_db()
        return Deployment(admin=admin, environment=environment, agent=agent, identity=identity)

    return make


def results_of(report) -> dict[str, str]:
    return {r.control_id: r.status for r in report.results.all()}
