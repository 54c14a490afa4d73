"""An agent that holds a payment in prod, people with roles, and helpers to file its request
the way the SDK does (signed with the agent's key)."""

from __future__ import annotations

import tempfile

import pytest
from rest_framework.test import APIClient

from agents_sdk.approvals import ApprovalClient
from agents_sdk.guard.decision import Decision, Reason
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import canonical_json
from agents_sdk.shipper import request_headers
from controlplane.celery import app as celery_app
from controlplane.identity.models import Agent, AgentKey
from controlplane.policies import services as policy_services
from tests.accounts.factories import UserFactory
from tests.tasks_inline import tasks_run_inline

REQUESTS_URL = "/api/v1/approvals/requests/"
HELD = Decision(
    effect="require_approval", allow=False,
    reasons=(Reason("payment-requires-approval", "Payment through payment_create requires human approval",
                    ("eu_ai_act.art14(1)",)),),
    obligations={"log": True, "mask": ["/action/args/card_number"]},
)


@pytest.fixture(autouse=True)
def inline_tasks():
    """Notifications run in this process when the request commits (no broker involved)."""
    with tasks_run_inline():
        yield


@pytest.fixture
def people(db):
    class People:
        owner = UserFactory(username="alice", email="alice@example.com", roles=["approver"])
        approver = UserFactory(username="bob", email="bob@example.com", roles=["approver"])
        second = UserFactory(username="carol", email="carol@example.com", roles=["approver"])
        customer = UserFactory(username="dave", email="dave@example.com", roles=["approver"])
        auditor = UserFactory(username="erin", email="erin@example.com", roles=["auditor"])
        author = UserFactory(username="frank", email="frank@example.com", roles=["policy_author"])
        admin = UserFactory(username="grace", email="grace@example.com", roles=["admin"])

    return People


@pytest.fixture
def payment_tool(people):
    return policy_services.create_tool(name="payment_create", scopes=["payments:create"], category="payment",
                                       by=people.admin)


def register_agent(identity: AgentIdentity, **fields) -> Agent:
    agent = Agent.objects.create(name=identity.name, owner_email=identity.owner, scopes=list(identity.scopes),
                                 environments=fields.pop("environments", ["prod"]), **fields)
    AgentKey.objects.create(key_id=identity.key_id, agent=agent, public_key=identity.public_key_b64)
    return agent


@pytest.fixture
def identity(db, payment_tool) -> AgentIdentity:
    identity = AgentIdentity.create("pay-bot", "alice@example.com", ["payments:create"])
    register_agent(identity)
    return identity


def payment_input(amount: int = 1200, *, environment: str = "prod", session_id: str = "s-1", **context) -> dict:
    return {
        "agent": {"id": "pay-bot", "name": "pay-bot"},
        "action": {"type": "tool_call", "tool": "payment_create",
                   "args": {"amount": amount, "currency": "EUR", "card_number": "4242424242424242"}},
        "context": {"environment": environment, "session_id": session_id, **context},
    }


def request_body(identity: AgentIdentity, input: dict | None = None) -> dict:
    client = ApprovalClient(identity, "http://127.0.0.1:9", spool_dir=tempfile.mkdtemp(prefix="approvals-spool-"))
    return client.request_body(input or payment_input(), HELD)


def file_signed(identity: AgentIdentity, body: dict | bytes, *, client: APIClient | None = None, **header_overrides):
    raw = body if isinstance(body, bytes) else canonical_json(body)
    headers = {**request_headers(identity, raw), **header_overrides}
    meta = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    return (client or APIClient()).generic("POST", REQUESTS_URL, raw, content_type="application/json", **meta)
