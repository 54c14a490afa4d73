"""Every GET in the OpenAPI schema, called on a populated database, answers what the schema
says: the deterministic half of tests/test_openapi.py.

The fuzzer finds shape errors only in states it happens to build (a paged list answered as a
bare list showed up once a webhook had a delivery). Here the demo data plus one object of
each kind the demo lacks fill every list; each GET without path parameters is called, and
each GET with them is called with values taken from the first item of its parent list
(/agents/{name}/keys/ from /agents/). Every answer is checked for a 2xx status, a documented
content type and a body the schema describes.
"""

import base64
import re
from datetime import timedelta

import pytest
import schemathesis
from django.utils import timezone
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from controlplane.approvals.models import ApprovalRequest, ApprovalRule, WebhookDelivery, WebhookEndpoint
from controlplane.audit.models import Batch, QuarantinedRecord, QuarantineReason
from controlplane.authoring.models import AuthoredRule, ImpactPreview
from controlplane.authoring.templates import TEMPLATES
from controlplane.bundles.models import Environment
from controlplane.celery import app as celery_app
from controlplane.delegation.models import DelegationRule, PersonGrant, Revocation
from controlplane.detection.models import (
    Alert, AlertDelivery, AgentBaseline, DeliveryChannel, Detector, Incident, ResponsePolicy, Severity,
)
from controlplane.identity.models import Agent
from tests.opa.factories import DecisionLogFactory, OPAInstanceFactory
from controlplane.wsgi import application
from tests.demo.seeding import seed_demo_verified_in_process
from tests.tasks_inline import tasks_run_inline

pytestmark = pytest.mark.django_db(transaction=True)

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]
# GETs that need a query the walk cannot derive from a list: called with this query.
QUERIES = {
    "/api/v1/audit/timeline/": lambda walk: {"agent": "code-assistant", "session": walk.first_session()},
    "/api/v1/authoring/previews/log-only-effects/": lambda walk: {"environment": "prod"},
    "/api/v1/delegation/sessions/": lambda walk: {"session_id": walk.first_session()},
}
# Called by agents, signed with an agent's key (tests/approvals covers it): not a user's GET.
AGENT_SIGNED = {"/api/v1/approvals/requests/{id}/wait/"}
# Objects every environment or agent has without a list of them (a default scope, a baseline).
DEFAULTS = {"environment": "prod", "agent": "billing-agent"}
# The walk must reach at least this many operations with a populated object behind them.
MIN_WALKED = 91  # every user GET


def add_what_the_demo_lacks(client):
    """What the demo data has none of: an approval rule, a pending approval request, a webhook
    with one delivery, a policy module, an engine's status and one of its decisions, an alert
    with a delivery and an incident, a baseline, response and delegation rules, a revocation,
    a person's grant, a quarantined record, an authored rule not yet published, a queued impact
    preview, an attestation with its document and a gap report."""
    agent = Agent.objects.get(name="billing-agent")
    prod = Environment.objects.get(name="prod")
    OPAInstanceFactory(environment=prod)
    DecisionLogFactory(environment=prod)
    module = client.post("/api/v1/policies/", {
        "path": "walk.rego", "source": "package warden.org.walk\n\nallow := false\n", "message": "walk",
    }, format="json")
    assert module.status_code == 201, module.content
    ApprovalRule.objects.create(environment="prod", tool_category="payments")
    now = timezone.now()
    request = ApprovalRequest.objects.create(
        agent=agent, environment="prod", session_id="walk-1", tool="payments.refund", tool_category="payments",
        args={"amount": 10}, masked_args={"amount": 10}, args_sha256="0" * 64, idempotency_key="walk-1",
        expires_at=now + timedelta(hours=1), sla_due_at=now + timedelta(minutes=15),
    )
    endpoint = WebhookEndpoint.objects.create(
        name="walk-hook", url="https://hooks.example.com/warden", encrypted_secret=b"x",
    )
    WebhookDelivery.objects.create(endpoint=endpoint, request=request, event="requested", payload={"text": "x"})
    # Detection and delegation objects as their services leave them, nullable fields empty.
    AgentBaseline.objects.create(agent=agent)
    alert = Alert.objects.create(
        agent=agent, detector=Detector.values[0], subject="payments.refund", severity=Severity.HIGH,
        summary="walk", first_seen_at=now, last_seen_at=now,
    )
    AlertDelivery.objects.create(alert=alert, channel=DeliveryChannel.values[0], destination="x", attempt=1)
    incident = Incident.objects.create(title="walk", severity=Severity.HIGH, aware_at=now, opened_by_name="walk")
    incident.alerts.add(alert)
    ResponsePolicy.objects.create(environment="prod", risk_tiers=["high"])
    DelegationRule.objects.create(agent=agent)
    Revocation.objects.create(grant_hash="f" * 64)
    PersonGrant.objects.create(
        grant_hash="e" * 64, grant={"audience": agent.name}, token="walk", audience=agent, session="walk-1",
        expires_at=now + timedelta(hours=1),
    )
    # Nullable fields empty, as a record refused before its form was read leaves them.
    QuarantinedRecord.objects.create(
        batch=Batch.objects.filter(agent=agent).first() or Batch.objects.first(), position=10**6, agent=agent,
        reason=QuarantineReason.MALFORMED, message="walk", raw=None, sealed_record=b"x",
    )
    # Authoring objects as they are before any publish or replay: no module, nothing counted.
    AuthoredRule.objects.create(name="walk-rule", template=next(iter(TEMPLATES)), params={}, sentence="walk")
    ImpactPreview.objects.create(
        environment=prod, window_start=now - timedelta(days=1), window_end=now, baseline_files={},
        candidate_files={}, candidate_digest="0" * 64,
    )
    # An attestation with its document, and a gap report built here as a worker would.
    attestation = client.post("/api/v1/compliance/attestations/", {
        "kind": "attestation", "framework": "hipaa", "control_id": "164.308(a)(1)(ii)(D)", "environment": "prod",
        "period_start": (now - timedelta(days=90)).isoformat(), "period_end": now.isoformat(),
        "statement": "Monthly review; no findings.", "owner": "demo-admin",
        "expires_at": (now + timedelta(days=90)).isoformat(),
        "document_base64": base64.b64encode(b"review minutes").decode(), "document_name": "minutes.txt",
    }, format="json")
    assert attestation.status_code == 201, attestation.content
    with tasks_run_inline():
        report = client.post("/api/v1/compliance/reports/", {"framework": "soc2", "environment": "prod"}, format="json")
    assert report.status_code == 202, report.content


class Walk:
    def first_session(self) -> str:
        events = self.client.get("/api/v1/audit/events/?agent=code-assistant").json()["results"]
        return events[0]["session_id"]

    def __init__(self, client):
        self.client = client
        self.guessed: set[str] = set()  # values taken from DEFAULTS, not from a list

    def value_for(self, path: str, name: str) -> str | None:
        """The first item of the list before `{name}` in the path: its field `name`, else its
        `name` or `id` (the lookup field the router names after the model)."""
        prefix = path[: path.index("{" + name + "}")]
        listed = self.client.get(prefix)
        if listed.status_code != 200 or "json" not in listed.get("Content-Type", ""):
            return self.guess(name)
        body = listed.json()
        items = body["results"] if isinstance(body, dict) and "results" in body else body
        if not isinstance(items, list) or not items:
            return self.guess(name)
        item = items[0]
        for field in (name, name.split("_")[-1], "name", "id", "environment"):
            if field in item:
                return str(item[field])
        return None

    def guess(self, name: str) -> str | None:
        if name in DEFAULTS:
            self.guessed.add(name)
        return DEFAULTS.get(name)


def test_every_get_answers_what_the_schema_says(settings, tmp_path, monkeypatch):
    seed_demo_verified_in_process(settings, tmp_path, monkeypatch)
    token = (tmp_path / "demo-tokens" / "admin.token").read_text()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    add_what_the_demo_lacks(client)
    walk = Walk(client)

    walked, unresolved = [], []
    for operation in (op.ok() for op in schema.get_all_operations()):
        if operation.method.upper() != "GET" or operation.path in AGENT_SIGNED:
            continue
        path = operation.path
        names = re.findall(r"\{(\w+)\}", path)
        values = {}
        walk.guessed.clear()
        for name in names:
            # Fill earlier parameters first: /agents/{agent_name}/keys/{key_id}/ lists keys of one agent.
            prefix_path = path
            for known, value in values.items():
                prefix_path = prefix_path.replace("{" + known + "}", value)
            value = walk.value_for(prefix_path, name)
            if value is None:
                break
            values[name] = value
        if len(values) < len(names):
            unresolved.append(path)
            continue
        query = QUERIES[path](walk) if path in QUERIES else None
        case = operation.Case(path_parameters=values or None, query=query)
        response = case.call(headers={"Authorization": f"Token {token}"})
        if response.status_code == 404 and walk.guessed:
            unresolved.append(path)  # a guessed name with nothing configured behind it
            continue
        assert response.status_code < 300, (path, values, response.status_code, response.text[:300])
        case.validate_response(response, checks=CHECKS)
        walked.append(path)
    print(f"\nwalked {len(walked)} GETs; no object behind {len(unresolved)}: {unresolved}")
    assert "/api/v1/approval-webhooks/{id}/deliveries/" in walked
    assert len(walked) >= MIN_WALKED, unresolved
