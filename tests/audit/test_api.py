"""Search, timeline and export: what people read."""

from __future__ import annotations

import pytest
from django.utils import timezone

from agents_sdk.identity import AgentIdentity
from agents_sdk.verify import verify_records
from controlplane.audit.models import AuditExport
from controlplane.bundles.models import Environment
from controlplane.opa.models import DecisionLog
from tests.audit.conftest import jsonl, sign_session

EVENTS = "/api/v1/audit/events/"


@pytest.fixture
def two_sessions(ship, signer):
    first = sign_session(signer, "s1", tool="refund", effect="allow", rule="refunds-under-50-eur")
    second = sign_session(signer, "s2", tool="file_delete", effect="deny", rule="no-prod-deletes")
    ship(first + second)
    return first, second


def ids(response):
    assert response.status_code == 200, response.content
    return [e["record_id"] for e in response.json()["results"]]


def test_events_are_searchable_by_every_role(two_sessions, any_role_client):
    first, second = two_sessions
    assert ids(any_role_client.get(EVENTS)) == [r["record_id"] for r in first + second]


def test_events_filter_by_agent_session_tool_effect_rule_kind(two_sessions, auditor_client):
    first, second = two_sessions
    get = lambda **q: ids(auditor_client.get(EVENTS, q))
    assert get(session="s2") == [r["record_id"] for r in second]
    assert get(agent="billing-bot", tool="refund") == [r["record_id"] for r in first]
    assert get(effect="deny") == [second[1]["record_id"]]
    assert get(rule="no-prod-deletes") == [second[1]["record_id"]]
    assert get(kind="output", session="s1") == [first[3]["record_id"]]
    assert get(agent="nobody") == []


def test_events_filter_by_time_range_and_checkpoint_status(two_sessions, auditor_client):
    from controlplane.audit import checkpoints

    first, second = two_sessions
    cut = second[0]["time"]
    assert ids(auditor_client.get(EVENTS, {"time_after": cut})) == [r["record_id"] for r in second]
    assert ids(auditor_client.get(EVENTS, {"time_before": cut})) == [r["record_id"] for r in first]
    assert ids(auditor_client.get(EVENTS, {"status": "checkpointed"})) == []
    checkpoints.create_checkpoints()
    assert len(ids(auditor_client.get(EVENTS, {"status": "checkpointed"}))) == 8
    assert auditor_client.get(EVENTS).json()["results"][0]["status"] == "checkpointed"


@pytest.mark.parametrize("value", ["yesterday", "2025-01-01T00:00:00+99:00"])
def test_bad_time_filter_is_400(two_sessions, auditor_client, value):
    response = auditor_client.get(EVENTS, {"time_after": value})
    assert response.status_code == 400 and "time_after" in response.json()


def test_quarantine_is_listed_with_reasons(ship, signer, auditor_client):
    records = sign_session(signer, "s1")
    records[0]["payload"]["tool"] = "forged"
    ship(records)
    body = auditor_client.get("/api/v1/audit/quarantine/", {"reason": "bad_signature"}).json()
    assert body["count"] == 1
    item = body["results"][0]
    assert item["record_id"] == records[0]["record_id"] and item["agent"] == "billing-bot"
    assert "does not verify" in item["message"]
    assert item["raw"]["payload"]["args"]["card_number"] == "[masked]"
    batch = auditor_client.get(f"/api/v1/audit/batches/{item['batch']}/").json()
    assert (batch["status"], batch["event_count"], batch["quarantined_count"]) == ("verified", 0, 4)


def test_session_timeline_has_events_quarantine_and_opa_decisions_in_order(ship, signer, auditor_client):
    records = sign_session(signer, "s1")
    tampered = dict(records[3], payload={"output": "changed"})
    ship(records[:3] + [tampered])
    environment = Environment.objects.create(name="prod", position=2)
    decision_input = {"agent": {"id": "billing-bot", "name": "billing-bot"},
                      "action": {"type": "tool_call", "tool": "refund"}, "context": {"session_id": "s1"}}
    DecisionLog.objects.create(
        decision_id="d-1", environment=environment, path="warden/decision", input=decision_input,
        result={"allow": True, "effect": "allow", "reasons": [{"rule": "refunds-under-50-eur"}]},
        timestamp=timezone.now(), event={},
    )
    DecisionLog.objects.create(decision_id="d-other", environment=environment, path="warden/decision",
                               input={**decision_input, "context": {"session_id": "s2"}},
                               timestamp=timezone.now(), event={})
    body = auditor_client.get("/api/v1/audit/timeline/", {"agent": "billing-bot", "session": "s1"}).json()
    sources = [(e["source"], e.get("seq")) for e in body["entries"]]
    assert sources == [("event", 0), ("event", 1), ("event", 2), ("quarantine", 3), ("opa_decision", None)]
    assert body["entries"][-1]["decision_id"] == "d-1" and body["entries"][-1]["effect"] == "allow"
    assert body["entries"][3]["reason"] == "bad_signature"


def test_timeline_needs_agent_and_session(auditor_client, db):
    response = auditor_client.get("/api/v1/audit/timeline/", {"agent": "x"})
    assert response.status_code == 400 and "session" in response.json()
    assert auditor_client.get("/api/v1/audit/timeline/", {"agent": "x", "session": "y"}).status_code == 404


def test_an_allowed_originals_export_is_the_signed_records_that_verify_offline_and_is_recorded(
    two_sessions, identity, auditor_client, settings
):
    settings.WARDEN_AUDIT_ORIGINALS_ROLES = ("auditor",)
    first, second = two_sessions
    response = auditor_client.get(EVENTS + "export/", {"session": "s1", "kind": "output", "originals": "true"})
    assert response.status_code == 200 and response["Content-Type"] == "application/jsonl"
    exported = jsonl(response)
    assert exported == first  # the whole session, unmasked, exactly as signed
    result = verify_records(exported, {identity.key_id: identity.public_key_b64})
    assert result.ok and result.records == 4
    export = AuditExport.objects.get()
    assert export.originals and export.user_name == auditor_client.user.username and export.sessions == 1
    assert "originals=true" in export.query


def test_exports_are_masked_unless_the_role_is_allowed_originals(two_sessions, auditor_client, settings):
    first, _ = two_sessions
    response = auditor_client.get(EVENTS + "export/", {"session": "s1", "originals": "true"})
    assert response.status_code == 403 and "WARDEN_AUDIT_ORIGINALS_ROLES" in response.json()["detail"]
    exported = jsonl(auditor_client.get(EVENTS + "export/", {"session": "s1"}))
    assert [r["record_id"] for r in exported] == [r["record_id"] for r in first]
    assert exported[0]["payload"]["args"]["card_number"] == "[masked]"
    assert exported[2]["payload"]["password"] == "[masked]"
    assert exported[3] == first[3]  # nothing masked: the record as signed
    assert list(AuditExport.objects.values_list("originals", flat=True)) == [False]


def test_export_is_for_admins_and_auditors_only(two_sessions, token_client):
    assert token_client("policy_author").get(EVENTS + "export/").status_code == 403
    assert token_client("admin").get(EVENTS + "export/").status_code == 200


def test_batches_are_listed_for_people_not_agents(two_sessions, auditor_client, anonymous_client):
    body = auditor_client.get("/api/v1/audit/batches/", {"agent": "billing-bot"}).json()
    assert body["count"] == 1 and body["results"][0]["record_count"] == 8
    assert anonymous_client.get("/api/v1/audit/batches/").status_code in (401, 403)


def test_another_agents_key_cannot_read(identity, client_for_agents):
    other = AgentIdentity.create("billing-bot", "x@example.com")
    assert client_for_agents.get(EVENTS, HTTP_X_WARDEN_AGENT=other.name).status_code in (401, 403)
