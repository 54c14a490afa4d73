"""Ingestion and verification: a batch is stored before the 202, then verified into
events or quarantined with the reason."""

from __future__ import annotations

import base64
import copy
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from agents_sdk.errors import SigningError
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner, record_hash, signing_bytes
from controlplane.audit import ingestion, tasks, verification
from controlplane.audit.models import AuditEvent, Batch, BatchStatus, QuarantinedRecord, SessionHead
from controlplane.identity.models import AgentKey, AgentStatus
from tests.audit.conftest import body_of, register, resign, route_verifications, sign_session, upload
from tests.identity.factories import set_key_created_at



def reasons():
    return {(q.record_id, q.reason) for q in QuarantinedRecord.objects.all()}


# -- the happy path ---------------------------------------------------------------------


def test_batch_is_stored_before_202_and_verified_after_commit(client_for_agents, identity, signer,
                                                             django_capture_on_commit_callbacks, monkeypatch):
    enqueued = []
    route_verifications(monkeypatch, enqueued.append)
    records = sign_session(signer, "ticket-4711")
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client_for_agents, identity, records)

    assert response.status_code == 202, response.content
    batch = Batch.objects.get(pk=response.json()["batch_id"])
    assert response.json() == {"batch_id": batch.pk, "accepted": 4}
    assert batch.status == BatchStatus.PENDING and batch.record_count == 4
    assert enqueued == [batch.pk]  # enqueued only once the batch is committed
    assert AuditEvent.objects.count() == 0

    outcome = tasks.verify_batch.apply(args=(batch.pk,)).get()
    assert outcome == {"batch_id": batch.pk, "events": 4, "quarantined": 0}
    events = list(AuditEvent.objects.order_by("seq"))
    assert [e.kind for e in events] == ["intent", "decision", "result", "output"]
    assert [e.record_hash for e in events] == [record_hash(r) for r in records]
    assert events[1].effect == "allow" and events[1].rule_ids == ["refunds-under-50-eur"]
    assert {e.tool for e in events} == {"refund"}
    batch.refresh_from_db()
    assert (batch.status, batch.event_count, batch.quarantined_count) == (BatchStatus.VERIFIED, 4, 0)
    head = SessionHead.objects.get(session_id="ticket-4711")
    assert (head.last_seq, head.last_hash, head.last_event_id) == (3, events[-1].record_hash, events[-1].pk)


def test_verification_is_idempotent_and_a_gone_batch_is_ignored(ship, signer):
    response = ship(sign_session(signer, "s1"))
    batch_id = response.json()["batch_id"]
    again = verification.verify_batch(batch_id)
    assert again.already_verified
    assert AuditEvent.objects.count() == 4 and QuarantinedRecord.objects.count() == 0
    assert tasks.verify_batch.apply(args=(10**9,)).get() is None


def test_sensitive_keys_and_mask_obligations_are_masked_before_storage(ship, signer):
    ship(sign_session(signer, "s1"))
    intent, decision, result, _ = AuditEvent.objects.order_by("seq")
    assert intent.payload["args"]["card_number"] == "[masked]"
    assert intent.payload["args"]["note"] == "[masked]"  # the decision's mask obligation /action/args/note
    assert intent.payload["args"]["ticket"] == 4711
    assert intent.masked_paths == ["/args/card_number", "/args/note"]
    assert result.payload["password"] == "[masked]" and result.masked_paths == ["/password"]
    assert decision.masked_paths == []


def test_gzip_body_is_accepted(ship, signer):
    response = ship(sign_session(signer, "s1"), compress=True)
    assert response.status_code == 202
    assert AuditEvent.objects.count() == 4


def test_session_continues_across_batches(ship, signer):
    records = sign_session(signer, "s1")
    ship(records[:2])
    ship(records[2:])
    assert list(AuditEvent.objects.order_by("id").values_list("seq", flat=True)) == [0, 1, 2, 3]
    assert QuarantinedRecord.objects.count() == 0


def test_pending_earlier_batch_of_the_agent_is_verified_first(client_for_agents, identity, signer,
                                                             django_capture_on_commit_callbacks, monkeypatch):
    route_verifications(monkeypatch, lambda batch_id: None)
    records = sign_session(signer, "s1")
    first = upload(client_for_agents, identity, records[:2]).json()["batch_id"]
    second = upload(client_for_agents, identity, records[2:]).json()["batch_id"]
    verification.verify_batch(second)  # the second task ran first
    assert Batch.objects.get(pk=first).status == BatchStatus.VERIFIED
    assert AuditEvent.objects.count() == 4 and QuarantinedRecord.objects.count() == 0


def test_stale_pending_batches_are_enqueued_again(client_for_agents, identity, signer, monkeypatch):
    queued = []
    route_verifications(monkeypatch, queued.append)
    upload(client_for_agents, identity, sign_session(signer, "s1"))
    batch = Batch.objects.get()
    assert ingestion.requeue_stale_batches(older_than_seconds=3600) == []
    assert ingestion.requeue_stale_batches(older_than_seconds=0) == [batch.pk]


# -- who may upload ---------------------------------------------------------------------


def test_upload_without_signature_headers_is_401_naming_them(client_for_agents):
    response = client_for_agents.post("/api/v1/audit/batches/", {"records": []}, format="json")
    assert response.status_code == 401
    assert "X-Warden-Signature" in response.json()["detail"]


def test_upload_with_a_body_other_than_the_signed_one_is_401(client_for_agents, identity, signer):
    body = body_of(sign_session(signer, "s1"))
    from agents_sdk.shipper import request_headers

    headers = request_headers(identity, body + b" ")
    extra = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    response = client_for_agents.generic("POST", "/api/v1/audit/batches/", body, content_type="application/json", **extra)
    assert response.status_code == 401
    assert "does not verify" in response.json()["detail"]
    assert Batch.objects.count() == 0


def test_upload_signed_by_an_unregistered_key_is_401(client_for_agents, identity, signer):
    stranger = AgentIdentity.create("billing-bot", "x@example.com")
    response = upload(client_for_agents, stranger, sign_session(signer, "s1"))
    assert response.status_code == 401
    assert "not a registered key of agent 'billing-bot'" in response.json()["detail"]


def test_upload_with_a_stale_timestamp_is_401(client_for_agents, identity, signer):
    response = upload(client_for_agents, identity, sign_session(signer, "s1"), timestamp=int(time.time()) - 3600)
    assert response.status_code == 401
    assert "clock" in response.json()["detail"]


def test_upload_with_a_revoked_key_is_401_and_from_a_revoked_agent_403(client_for_agents, identity, signer):
    records = sign_session(signer, "s1")
    key = AgentKey.objects.get(key_id=identity.key_id)
    key.revoked_at = timezone.now()
    key.save()
    response = upload(client_for_agents, identity, records)
    assert response.status_code == 401 and "revoked" in response.json()["detail"]

    key.agent.status = AgentStatus.REVOKED
    key.agent.save()
    response = upload(client_for_agents, identity, records)
    assert response.status_code == 403 and "revoked" in response.json()["detail"]


def test_suspended_agent_may_still_upload_what_it_did(ship, identity, signer):
    AgentKey.objects.get(key_id=identity.key_id).agent.__class__.objects.update(status=AgentStatus.SUSPENDED)
    assert ship(sign_session(signer, "s1")).status_code == 202


# -- bad input: a clear 4xx -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"records": [', "not valid JSON"),
        (b'{"records": {}}', '{"records": [...]}'),
        (b'{"records": []}', "at least one record"),
        (b'{"records": [{"a": 1, "a": 2}]}', "duplicate key 'a'"),
        (b'{"records": [NaN]}', "NaN is not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_json_is_400_naming_the_problem(client_for_agents, identity, body, message):
    response = upload(client_for_agents, identity, body=body)
    assert response.status_code == 400, response.content
    assert message in response.json()["records"][0]
    assert Batch.objects.count() == 0


def test_unsupported_content_encoding_is_400(client_for_agents, identity, signer):
    body = body_of(sign_session(signer, "s2"))
    from agents_sdk.shipper import request_headers

    extra = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in request_headers(identity, body).items()}
    response = client_for_agents.generic("POST", "/api/v1/audit/batches/", body, content_type="application/json",
                                         HTTP_CONTENT_ENCODING="br", **extra)
    assert response.status_code == 400
    assert "br" in response.json()["content_encoding"][0]


def test_too_many_records_is_413(client_for_agents, identity, signer, settings):
    settings.WARDEN_AUDIT_MAX_BATCH_RECORDS = 3
    response = upload(client_for_agents, identity, sign_session(signer, "s1"))
    assert response.status_code == 413
    assert "at most 3 records" in response.json()["detail"]
    assert Batch.objects.count() == 0


def test_too_many_bytes_is_413_before_reading_them(client_for_agents, identity, signer, settings):
    settings.WARDEN_AUDIT_MAX_BATCH_BYTES = 1000
    response = upload(client_for_agents, identity, sign_session(signer, "s1"))
    assert response.status_code == 413
    assert "at most 1000 bytes" in response.json()["detail"]


def test_gzip_bomb_is_413(client_for_agents, identity, settings):
    settings.WARDEN_AUDIT_MAX_BATCH_BYTES = 100_000
    bomb = b'{"records": ["' + b"a" * 5_000_000 + b'"]}'
    response = upload(client_for_agents, identity, body=bomb, compress=True)
    assert response.status_code == 413
    assert "inflated body exceeds 100000 bytes" in response.json()["detail"]


# -- bad records: quarantined with the reason --------------------------------------------


def test_forged_signature_is_quarantined_and_the_rest_of_the_session_with_it(ship, signer):
    records = sign_session(signer, "s1")
    forged = copy.deepcopy(records)
    forged[1]["payload"]["effect"] = "deny"  # altered after signing
    ship(forged)
    assert AuditEvent.objects.count() == 1
    assert reasons() == {
        (forged[1]["record_id"], "bad_signature"),
        (forged[2]["record_id"], "broken_chain"),
        (forged[3]["record_id"], "broken_chain"),
    }
    batch = Batch.objects.get()
    assert (batch.event_count, batch.quarantined_count) == (1, 3)
    bad = QuarantinedRecord.objects.get(reason="bad_signature")
    assert "does not verify" in bad.message and bad.seq == 1 and bad.session_id == "s1"
    assert bad.raw["payload"]["effect"] == "deny"
    gap, chained = QuarantinedRecord.objects.filter(reason="broken_chain").order_by("position")
    assert "seq jumps from 0 to 2" in gap.message
    assert "position 2 of this batch, which was quarantined" in chained.message


def test_nul_character_is_refused_before_the_202_and_nothing_is_stored(ship, signer, identity):
    # PostgreSQL cannot store U+0000: the SDK's signer refuses to sign it, and a record
    # signed some other way is refused at the API, so no worker ever fails on it.
    with pytest.raises(SigningError, match="U\\+0000"), signer.session(session_id="nul") as session:
        session.intent("file_read", {"path": "/tmp/a\x00b"})
    with signer.session(session_id="fine") as session:
        good = session.intent("file_read", {"path": "/tmp/ok"})
    bad = resign(identity, dict(good, record_id=str(uuid.uuid4()), payload={"tool": "x", "args": {"p": "a\x00b"}}))
    response = ship([good, bad])
    assert response.status_code == 400
    assert "records[1]: payload.args.p: contains U+0000" in response.json()["records"][0]
    assert Batch.objects.count() == 0


def test_replayed_record_is_quarantined_and_not_stored_twice(ship, signer):
    records = sign_session(signer, "s1")
    ship(records)
    second = ship([records[2]]).json()["batch_id"]
    assert AuditEvent.objects.count() == 4
    replay = QuarantinedRecord.objects.get(batch_id=second)
    assert replay.reason == "replayed" and replay.record_id == records[2]["record_id"]
    assert "already stored as event" in replay.message


def test_another_agent_using_a_victims_record_id_first_does_not_squat_it(ship, signer):
    squatter = AgentIdentity.create("ops-bot", "ops@example.com")
    register(squatter)
    genuine = sign_session(signer, "s1")
    with ActionSigner(squatter).session(session_id="s1") as session:
        taken = session.intent("noop", {})
    stolen = resign(squatter, dict(taken, record_id=genuine[0]["record_id"]))
    assert ship([stolen], who=squatter).status_code == 202
    ship(genuine)
    assert QuarantinedRecord.objects.count() == 0
    owners = dict(AuditEvent.objects.filter(record_id=genuine[0]["record_id"]).values_list("agent__name", "session_id"))
    assert owners == {"ops-bot": "s1", "billing-bot": "s1"}
    assert AuditEvent.objects.filter(agent__name="billing-bot").count() == 4
    # Replaying the victim's own record is still refused: ids are unique per agent.
    ship([genuine[0]])
    assert reasons() == {(genuine[0]["record_id"], "replayed")}


def test_record_id_twice_in_one_batch_is_quarantined(ship, signer):
    records = sign_session(signer, "s1")
    ship([records[0], records[0], records[1]])
    assert AuditEvent.objects.count() == 2
    assert reasons() == {(records[0]["record_id"], "replayed")}


def test_record_signed_with_a_key_after_its_revocation_is_quarantined(ship, identity):
    agent = AgentKey.objects.get(key_id=identity.key_id).agent
    rotated = identity.rotate()
    register(rotated, agent=agent)
    old_signer = ActionSigner(identity)
    before = sign_session(old_signer, "s1")
    AgentKey.objects.filter(key_id=identity.key_id).update(revoked_at=timezone.now())
    time.sleep(0.01)
    after = sign_session(old_signer, "s2")  # the old key, used after its revocation
    response = ship(before + after, who=rotated)  # uploaded with the agent's active key
    assert response.status_code == 202
    assert set(AuditEvent.objects.values_list("session_id", flat=True)) == {"s1"}
    revoked = QuarantinedRecord.objects.filter(reason="revoked_key")
    assert {q.record_id for q in revoked} == {r["record_id"] for r in after}
    assert "revoked at" in revoked.first().message
    assert QuarantinedRecord.objects.count() == 4


def test_unknown_key_and_other_agents_records_are_quarantined(ship, signer):
    stranger = AgentIdentity.create("billing-bot", "x@example.com")
    other = AgentIdentity.create("ops-bot", "ops@example.com")
    register(other)
    unknown = sign_session(ActionSigner(stranger), "s1")[:1]
    foreign = sign_session(ActionSigner(other), "s2")[:1]
    ship(unknown + foreign)
    assert reasons() == {(unknown[0]["record_id"], "unknown_key"), (foreign[0]["record_id"], "agent_mismatch")}
    assert "of agent 'ops-bot'" in QuarantinedRecord.objects.get(reason="agent_mismatch").message


def test_chain_fork_is_quarantined(ship, identity, signer):
    records = sign_session(signer, "s1")
    ship(records)
    # A second record signed after seq 1: same prev_hash as the stored seq 2, different content.
    fork = {**records[2], "record_id": "3f0b6f5e-1c0f-4a53-9d89-3f4f0b0c0a11", "payload": {"summary": "other"}}
    fork.pop("signature")
    fork["signature"] = base64.b64encode(identity.sign(signing_bytes(fork))).decode()
    ship([fork])
    q = QuarantinedRecord.objects.get()
    assert q.reason == "forked_chain" and q.record_id == fork["record_id"]
    assert "seq 1" in q.message and "up to seq 3" in q.message
    # A whole new chain under the same session id is a fork too.
    restart = sign_session(ActionSigner(identity), "s1")[:1]
    ship(restart)
    assert QuarantinedRecord.objects.filter(reason="forked_chain").count() == 2


def test_missing_records_break_the_chain(ship, signer):
    records = sign_session(signer, "s1")
    ship([records[0], records[2], records[3]])
    assert AuditEvent.objects.count() == 1
    gap = QuarantinedRecord.objects.get(record_id=records[2]["record_id"])
    assert gap.reason == "broken_chain" and "seq jumps from 0 to 2" in gap.message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("signature"), "missing field(s): signature"),
        (lambda r: r.update(extra=1), "unexpected field(s): extra"),
        (lambda r: r.update(record_id="not-a-uuid"), "record_id must be a UUID"),
        (lambda r: r.update(seq=-1), "seq must be a non-negative integer"),
        (lambda r: r.update(time="yesterday"), "time must be an RFC 3339"),
        (lambda r: r.update(kind="telepathy"), "kind 'telepathy' is not one of"),
        (lambda r: r.update(signature="AAAA"), "signature must be the base64 of a 64-byte Ed25519 signature"),
    ],
)
def test_malformed_records_are_refused_at_the_api_naming_each(ship, signer, change, message):
    record = sign_session(signer, "s1")[0]
    change(record)
    response = ship([record, "not even an object"])
    assert response.status_code == 400
    problem = response.json()["records"][0]
    assert f"records[0]: {message}" in problem
    assert "records[1]: a record must be a JSON object, not str" in problem
    assert Batch.objects.count() == 0 and QuarantinedRecord.objects.count() == 0


def test_a_session_of_an_intent_in_an_earlier_batch_still_masks_by_key(ship, signer):
    records = sign_session(signer, "s1")
    ship(records[:1])
    ship(records[1:])
    intent = AuditEvent.objects.get(seq=0)
    assert intent.payload["args"]["card_number"] == "[masked]"
    # The decision's pointer mask cannot reach an intent already stored (documented limit).
    assert intent.payload["args"]["note"] == "n"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the append-only trigger exists on PostgreSQL only")
def test_audit_tables_refuse_update_and_delete_and_no_setting_unlocks_them(ship, signer):
    from django.db import transaction
    from django.db.utils import DatabaseError

    ship(sign_session(signer, "s1"))
    event = AuditEvent.objects.first()
    for statement in ("UPDATE audit_auditevent SET tool = 'x' WHERE id = %s", "DELETE FROM audit_auditevent WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [event.pk])
    with pytest.raises(DatabaseError, match="processing columns"), transaction.atomic(), connection.cursor() as c:
        c.execute("UPDATE audit_batch SET body = '\\x00' WHERE id = %s", [event.batch_id])
    # The old bypass: a session setting anyone can set. It unlocks nothing now.
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL warden.audit_retention = 'on'")
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [event.pk])
    # Even the retention function removes only events a checkpoint covers.
    with pytest.raises(DatabaseError, match="only checkpointed events"), transaction.atomic(), connection.cursor() as c:
        c.execute("SELECT warden_audit_retention_delete(%s::bigint[], '{}', '{}')", [[event.pk]])
    assert AuditEvent.objects.count() == 4


def test_records_older_than_the_keys_registration_are_quarantined(ship, identity, signer):
    set_key_created_at(identity.key_id, timezone.now() + timedelta(hours=1))
    ship(sign_session(signer, "s1")[:1])
    assert "registered only at" in QuarantinedRecord.objects.get().message
