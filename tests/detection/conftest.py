"""Fixtures for detection: agents whose private keys the test holds, records signed with
agents_sdk and stored through the real audit pipeline (API upload, then verification by
the `audit.verify_batch` task, run in-process), and short warm-ups."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner, canonical_json
from agents_sdk.shipper import request_headers
from controlplane.celery import app as celery_app
from controlplane.identity.models import Agent, AgentKey
from tests.identity.factories import AgentFactory
from tests.tasks_inline import tasks_run_inline

BATCHES_URL = "/api/v1/audit/batches/"


@pytest.fixture(autouse=True)
def short_warmup(settings):
    """Baselines start judging after 20 calls (production: 3 days and 200 calls)."""
    settings.WARDEN_DETECTION_WARMUP_HOURS = 0.0
    settings.WARDEN_DETECTION_WARMUP_CALLS = 20
    settings.WARDEN_DETECTION_WEBHOOK_URL = ""
    settings.WARDEN_DETECTION_ALERT_EMAILS = ()


@pytest.fixture
def eager_tasks():
    """Tasks sent by name (verification, deliveries) run in this process, at commit."""
    with tasks_run_inline():
        yield


class SignedAgent:
    """An agent registered in the control plane whose records are signed by its own key."""

    def __init__(self, name: str, **fields):
        self.identity = AgentIdentity.create(name, "owner@example.com", ["read:tickets"])
        self.agent = AgentFactory(name=name, **fields)
        AgentKey.objects.create(key_id=self.identity.key_id, agent=self.agent, public_key=self.identity.public_key_b64)
        self.signer = ActionSigner(self.identity)

    def calls(self, session_id: str, calls: list[tuple[str, dict]], *, effect: str = "allow") -> list[dict]:
        records = []
        with self.signer.session(session_id=session_id) as session:
            for tool, args in calls:
                records.append(session.intent(tool, args))
                records.append(session.decision(effect, reasons=[]))
                records.append(session.result("done"))
        return records


def upload(identity: AgentIdentity, records: list[dict]):
    body = b'{"records":[' + b",".join(canonical_json(r) for r in records) + b"]}"
    extra = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in request_headers(identity, body).items()}
    return APIClient().generic("POST", BATCHES_URL, body, content_type="application/json", **extra)


@pytest.fixture
def ship(eager_tasks, django_capture_on_commit_callbacks):
    """Upload records as the agent does and have them verified and stored."""

    def send(agent: SignedAgent, records: list[dict]) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            response = upload(agent.identity, records)
        assert response.status_code == 202, response.content

    return send


@pytest.fixture
def signed_agent(db):
    def make(name: str = "invoice-bot", **fields) -> SignedAgent:
        fields.setdefault("environments", ["prod"])
        return SignedAgent(name, **fields)

    return make


def known_traffic(n: int, host: str = "api.bank.example") -> list[tuple[str, dict]]:
    return [("http_request", {"url": f"https://{host}/payments/{i}", "method": "GET"}) for i in range(n)]


def agent_named(name: str) -> Agent:
    return Agent.objects.get(name=name)
