"""Fixtures for the audit pipeline: an agent whose identity (private key) the test holds,
registered in the control plane, and helpers to sign records and upload batches."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime

import pytest
from django.db import connection
from rest_framework.test import APIClient

from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner, canonical_json
from agents_sdk.shipper import request_headers
from controlplane.audit import partitions, verification
from controlplane.core import tasks as core_tasks
from controlplane.identity.models import Agent, AgentKey
from tests.identity.factories import AgentFactory

BATCHES_URL = "/api/v1/audit/batches/"


def register(identity: AgentIdentity, agent: Agent | None = None, **fields) -> AgentKey:
    agent = agent or AgentFactory(name=identity.name, **fields)
    return AgentKey.objects.create(key_id=identity.key_id, agent=agent, public_key=identity.public_key_b64)


@pytest.fixture
def identity(db) -> AgentIdentity:
    """billing-bot's identity, registered (agent + key) in the control plane."""
    identity = AgentIdentity.create("billing-bot", "payments@example.com", ["write:refunds"])
    register(identity, environments=["prod"])
    return identity


@pytest.fixture
def signer(identity) -> ActionSigner:
    return ActionSigner(identity)


def sign_session(signer: ActionSigner, session_id: str, *, tool: str = "refund", card: str = "4242424242424242",
                 effect: str = "allow", rule: str = "refunds-under-50-eur") -> list[dict]:
    with signer.session(session_id=session_id) as session:
        records = [
            session.intent(tool, {"ticket": 4711, "amount_cents": 1250, "card_number": card, "note": "n"}),
            session.decision(effect, reasons=[{"rule": rule, "message": "small refund", "controls": []}],
                             obligations={"log": True, "mask": ["/action/args/note"]}),
            session.result("refunded 12,50 €", password="hunter2"),
            session.output("Done."),
        ]
    return records


def body_of(records) -> bytes:
    return b'{"records":[' + b",".join(canonical_json(r) for r in records) + b"]}"


def hostile_body_of(records) -> bytes:
    """A batch body as a hostile agent may send it: any value, lone surrogates as escapes."""
    return json.dumps({"records": records}, ensure_ascii=True).encode()


def resign(identity: AgentIdentity, record: dict) -> dict:
    """`record` signed with the agent's key as it is, past the signer's checks (as a hostile
    or buggy agent could); values without a canonical form are signed as Python encodes them."""
    unsigned = {k: v for k, v in record.items() if k != "signature"}
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    signature = identity.sign(text.encode("utf-8", "surrogatepass"))
    return dict(unsigned, signature=base64.b64encode(signature).decode("ascii"))


def upload(client: APIClient, identity: AgentIdentity, records=None, *, body: bytes | None = None,
           compress: bool = False, headers: dict | None = None, timestamp: int | None = None):
    """POST a batch signed as the agent signs it."""
    body = body_of(records) if body is None else body
    extra = {}
    if compress:
        body = gzip.compress(body)
        extra["HTTP_CONTENT_ENCODING"] = "gzip"
    signed = request_headers(identity, body, timestamp=timestamp)
    signed.update(headers or {})
    for name, value in signed.items():
        extra["HTTP_" + name.upper().replace("-", "_")] = value
    return client.generic("POST", BATCHES_URL, body, content_type="application/json", **extra)


def route_verifications(monkeypatch, handler) -> None:
    """Send every queued "audit.verify_batch" to `handler(batch_id)` instead of the broker;
    other tasks go their usual way."""
    send_now = core_tasks.send_now

    def route(name, *args, queue=None):
        if name == "audit.verify_batch":
            handler(*args)
        else:
            send_now(name, *args, queue=queue)

    monkeypatch.setattr(core_tasks, "send_now", route)


@pytest.fixture
def verify_inline(monkeypatch):
    """Verification runs synchronously at commit, in this process (no broker involved)."""
    route_verifications(monkeypatch, verification.verify_batch)


@pytest.fixture
def ship(client_for_agents, identity, verify_inline, django_capture_on_commit_callbacks):
    """Upload records as billing-bot and run verification; returns the 202 response."""

    def send(records, *, who: AgentIdentity | None = None, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            response = upload(client_for_agents, who or identity, records, **kwargs)
        return response

    return send


@pytest.fixture
def client_for_agents() -> APIClient:
    return APIClient()


def jsonl(response) -> list[dict]:
    content = b"".join(response.streaming_content)
    return [json.loads(line) for line in content.splitlines() if line.strip()]


def insert_january_events(select_sql: str, params: list) -> None:
    """Events of January 2026 written straight into the partitions by one INSERT ... SELECT
    (`select_sql` yields the columns of EVENT_COLUMNS, `n` from generate_series), their rule
    rows filled as ingestion and the migration fill them, and statistics gathered: tables big
    enough for the planner to care, in a second (tests that check a search's plan)."""
    with connection.cursor() as cursor:
        partitions.ensure_partitions(
            cursor, "audit_auditevent", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
        )
        cursor.execute(f"INSERT INTO audit_auditevent ({EVENT_COLUMNS}) {select_sql}", params)
        cursor.execute(partitions.rule_rows_sql("audit_auditevent"))
        for table in ("audit_auditevent", "audit_auditevent_rule"):
            cursor.execute(f"ANALYZE {table}")


EVENT_COLUMNS = (
    "record_id, agent_id, key_id, session_id, seq, kind, time, tool, effect, "
    "rule_ids, payload, masked_paths, prev_hash, record_hash, sealed_record, batch_id, stored_at"
)
