"""No record can jam the pipeline: what the store cannot hold is refused before the 202,
a record the database still refuses is quarantined alone, and a batch that keeps failing
is parked so that the agent's later batches are stored."""

from __future__ import annotations

import copy
import logging
import uuid

import pytest
from django.db import DatabaseError, connection

from agents_sdk.errors import SigningError
from agents_sdk.records import MAX_PAYLOAD_DEPTH, MAX_STRING_LENGTH
from controlplane.audit import verification
from controlplane.audit.models import AuditEvent, Batch, BatchStatus, QuarantinedRecord
from tests.audit.conftest import hostile_body_of, resign, route_verifications, sign_session, upload

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL triggers stand in for a refusal")


def nested(depth: int):
    value: object = "bottom"
    for _ in range(depth):
        value = {"n": value}
    return value


POISONS = {
    "nul in session_id": lambda r: r.update(session_id="s\x00"),
    "lone surrogate in session_id": lambda r: r.update(session_id="s\ud800"),
    "session_id too long": lambda r: r.update(session_id="s" * 201),
    "nul in agent": lambda r: r.update(agent="billing-bot\x00"),
    "nul in a payload key": lambda r: r["payload"]["args"].update({"a\x00": 1}),
    "lone surrogate in a payload value": lambda r: r["payload"]["args"].update(note="\udfff"),
    "payload nested 900 levels": lambda r: r["payload"]["args"].update(deep=nested(900)),
    "oversized string": lambda r: r["payload"]["args"].update(blob="x" * (MAX_STRING_LENGTH + 1)),
    "an infinite number": lambda r: r["payload"]["args"].update(amount=float("inf")),
    "record_id of another form": lambda r: r.update(record_id="Not-A-UUID\x00"),
}
EXPECTED = {
    "nul in session_id": "session_id: contains U+0000",
    "lone surrogate in session_id": "session_id: contains an unpaired surrogate",
    "session_id too long": "session_id must be at most 200 characters",
    "nul in agent": "agent: contains U+0000",
    "nul in a payload key": "(a key): contains U+0000",
    "lone surrogate in a payload value": "payload.args.note: contains an unpaired surrogate",
    "payload nested 900 levels": f"nests deeper than {MAX_PAYLOAD_DEPTH} levels",
    "oversized string": f"at most {MAX_STRING_LENGTH}",
    "an infinite number": "has no JSON form",
    "record_id of another form": "record_id must be a UUID",
}


@pytest.mark.parametrize("kind", list(POISONS))
def test_a_poison_record_is_refused_at_the_api_and_the_agents_next_batch_is_stored(
    kind, client_for_agents, identity, signer, verify_inline, django_capture_on_commit_callbacks
):
    good = sign_session(signer, "s1")
    poison = dict(copy.deepcopy(good[0]), record_id=str(uuid.uuid4()))
    POISONS[kind](poison)
    poison = resign(identity, poison)
    body = hostile_body_of([good[0], poison]).replace(b"Infinity", b"1e400")
    with django_capture_on_commit_callbacks(execute=True):
        refused = upload(client_for_agents, identity, body=body)
    assert refused.status_code == 400, refused.content
    assert "records[1]: " in refused.json()["records"][0] and EXPECTED[kind] in refused.json()["records"][0]
    assert Batch.objects.count() == 0
    with django_capture_on_commit_callbacks(execute=True):
        accepted = upload(client_for_agents, identity, good)
    assert accepted.status_code == 202
    assert AuditEvent.objects.count() == len(good)


@pytest.mark.parametrize("kind", [k for k in POISONS if k not in ("nul in agent", "record_id of another form")])
def test_the_sdk_signer_refuses_to_sign_the_same_poison(kind, signer):
    record = sign_session(signer, "template")[0]
    POISONS[kind](record)
    with pytest.raises(SigningError, match="U\\+0000|surrogate|deeper|at most|no JSON form"):
        with signer.session(session_id=record["session_id"]) as session:
            session.intent(record["payload"]["tool"], record["payload"]["args"])


@postgres_only
def test_a_record_the_database_refuses_is_quarantined_alone_and_the_batch_is_verified(ship, signer):
    # A refusal nobody foresaw (here a trigger): the batch must not fail forever because of it.
    with connection.cursor() as cursor:
        cursor.execute("""
            CREATE FUNCTION test_refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.session_id = 'poison' AND NEW.seq = 1 THEN
                    RAISE EXCEPTION 'value refused' USING ERRCODE = 'data_exception';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER test_refuse_poison BEFORE INSERT ON audit_auditevent
                FOR EACH ROW EXECUTE FUNCTION test_refuse_poison();
        """)
    poison = sign_session(signer, "poison")
    fine = sign_session(signer, "fine")
    response = ship(poison + fine)
    assert response.status_code == 202
    batch = Batch.objects.get()
    assert batch.status == BatchStatus.VERIFIED and (batch.event_count, batch.quarantined_count) == (5, 3)
    assert AuditEvent.objects.filter(session_id="fine").count() == 4
    assert list(AuditEvent.objects.filter(session_id="poison").values_list("seq", flat=True)) == [0]
    rows = {q.seq: q for q in QuarantinedRecord.objects.all()}
    assert rows[1].reason == "unstorable" and "value refused" in rows[1].message
    assert {rows[2].reason, rows[3].reason} == {"broken_chain"}
    assert "which the database refused" in rows[2].message


@postgres_only
def test_a_batch_that_keeps_failing_is_parked_with_an_alert_and_later_batches_are_stored(
    client_for_agents, identity, signer, monkeypatch, settings, caplog
):
    settings.WARDEN_AUDIT_MAX_BATCH_ATTEMPTS = 3
    route_verifications(monkeypatch, lambda batch_id: None)
    with connection.cursor() as cursor:
        cursor.execute("""
            CREATE FUNCTION test_stuck() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.session_id = 'stuck' THEN RAISE EXCEPTION 'the disk is on fire'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER test_stuck BEFORE INSERT ON audit_sessionhead FOR EACH ROW EXECUTE FUNCTION test_stuck();
        """)
    stuck = upload(client_for_agents, identity, sign_session(signer, "stuck")).json()["batch_id"]
    later = upload(client_for_agents, identity, sign_session(signer, "later")).json()["batch_id"]
    for _ in range(3):
        with pytest.raises(DatabaseError, match="on fire"):
            verification.verify_batch(later)  # waits for the earlier batch, which fails
    with caplog.at_level(logging.ERROR, logger="controlplane.audit.verification"):
        outcome = verification.verify_batch(later)
    assert outcome.events == 4
    parked = Batch.objects.get(pk=stuck)
    assert parked.status == BatchStatus.PARKED and parked.attempts == 3
    assert "parked so that later batches" in parked.problem
    assert any("ALERT audit batch" in r.getMessage() and str(stuck) in r.getMessage() for r in caplog.records)
    assert AuditEvent.objects.filter(session_id="later").count() == 4
    assert verification.verify_batch(stuck).parked
