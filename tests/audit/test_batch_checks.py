"""Per-record work done once: the worker trusts the form the API checked before its 202 (and
only that: a body stored without the API's mark is checked record by record), skips the
masking walk only when no key can be a sensitive one, and still judges every signature
and chain link one record at a time, across batch boundaries, in order."""

from __future__ import annotations

import copy
import gzip
import json

import pytest
from cryptography.fernet import Fernet, InvalidToken

from agents_sdk.records import canonical_json
from controlplane.audit import records, verification
from controlplane.audit.models import AuditEvent, Batch, BatchStatus, QuarantinedRecord
from controlplane.identity.models import Agent
from tests.audit.conftest import body_of, resign, sign_session


def stored_without_the_mark(identity, items) -> Batch:
    """A batch as an earlier version stored it: sealed, but without the API's form mark."""
    body = json.dumps({"records": items}, ensure_ascii=True).encode()
    return Batch.objects.create(
        agent=Agent.objects.get(name=identity.name), key_id=identity.key_id, body=records.seal(body),
        record_count=len(items), byte_count=len(body),
    )


def quarantined() -> list[tuple[int, str, str]]:
    return list(QuarantinedRecord.objects.order_by("position").values_list("position", "record_id", "reason"))


def test_the_worker_does_not_check_again_the_form_the_api_checked(ship, signer, monkeypatch):
    def checked_twice(record):
        raise AssertionError("the form of a record the API checked was checked again")

    monkeypatch.setattr(records, "form_problem", checked_twice)
    response = ship(sign_session(signer, "s1"))
    assert response.status_code == 202
    batch = Batch.objects.get()
    assert batch.status == BatchStatus.VERIFIED and batch.event_count == 4
    items, form_checked = records.unseal_batch(batch.body)
    assert form_checked and [r["seq"] for r in items] == [0, 1, 2, 3]


def test_a_body_stored_without_the_mark_is_checked_record_by_record(identity, signer):
    good = sign_session(signer, "good")
    bad = resign(identity, dict(copy.deepcopy(sign_session(signer, "bad")[0]), record_id="Not-A-UUID"))
    missing = {k: v for k, v in sign_session(signer, "missing")[0].items() if k != "key_id"}
    batch = stored_without_the_mark(identity, [good[0], bad, good[1], missing, good[2], good[3], "not an object"])

    outcome = verification.verify_batch(batch.pk)

    assert (outcome.events, outcome.quarantined) == (4, 3)
    assert list(AuditEvent.objects.order_by("id").values_list("seq", flat=True)) == [0, 1, 2, 3]
    assert [(p, reason) for p, _, reason in quarantined()] == [(1, "malformed"), (3, "malformed"), (6, "malformed")]
    assert "record_id must be a UUID" in QuarantinedRecord.objects.get(position=1).message
    assert "missing field(s): key_id" in QuarantinedRecord.objects.get(position=3).message


def test_the_form_mark_cannot_be_added_to_a_body_by_anyone_without_the_sealing_key(identity, signer):
    forged = Fernet(Fernet.generate_key()).encrypt(records.FORM_CHECKED + body_of(sign_session(signer, "s1")))
    batch = Batch.objects.create(agent=Agent.objects.get(name=identity.name), key_id=identity.key_id, body=forged,
                                 record_count=4, byte_count=len(forged))
    with pytest.raises(InvalidToken):
        verification.verify_batch(batch.pk)
    assert AuditEvent.objects.count() == 0


def test_one_bad_signature_in_a_batch_quarantines_that_record_and_what_chains_to_it_only(ship, signer):
    first, second, third = (sign_session(signer, s) for s in ("a", "b", "c"))
    forged = copy.deepcopy(second[3])
    forged["payload"]["output"] = "altered after signing"
    interleaved = [first[0], second[0], third[0], first[1], second[1], third[1],
                   first[2], second[2], third[2], first[3], forged, third[3]]
    ship(interleaved)
    assert quarantined() == [(10, forged["record_id"], "bad_signature")]
    # Every other record is stored, in the order it was sent.
    stored = list(AuditEvent.objects.order_by("id").values_list("record_id", flat=True))
    assert [str(r) for r in stored] == [r["record_id"] for r in interleaved if r is not forged]


def test_a_gap_across_a_batch_boundary_is_caught_and_the_next_batch_continues_the_chain(ship, signer):
    with signer.session(session_id="long") as session:
        chain = [session.output(f"step {n}") for n in range(9)]
    ship(chain[:3])
    ship(chain[4:6])  # chain[3] never arrives: both are quarantined
    ship(chain[3:4] + chain[6:])  # the missing record, late, then the rest
    assert list(AuditEvent.objects.order_by("id").values_list("seq", flat=True)) == [0, 1, 2, 3]
    rows = {q.seq: q for q in QuarantinedRecord.objects.all()}
    assert rows[4].reason == "broken_chain" and "seq jumps from 2 to 4" in rows[4].message
    assert rows[5].reason == "broken_chain"
    assert {rows[n].reason for n in (6, 7, 8)} == {"broken_chain"}


@pytest.mark.parametrize(("payload", "may_hold_one"), [
    ({"args": {"Card_Number": "4242"}}, True),
    ({"args": [{"deep": {"PASSWORD": "x"}}]}, True),
    ({"note": "zürich ✓", "args": {"api_key": "k"}}, True),  # not ASCII: the text is decoded, then lowercased
    ({"args": {"\u212aey": "kelvin sign"}}, True),  # "\u212a".lower() == "k"
    ({"note": "nothing here", "args": {"amount": 1, "passwords": "a longer key is not one"}}, False),
    ({"note": 'a value "token": that only looks like a key'}, False),
])
def test_the_masking_walk_is_skipped_only_when_no_key_can_be_sensitive(payload, may_hold_one):
    sensitive = frozenset({"card_number", "password", "api_key", "key", "token"})
    might = records.sensitive_key_test(sensitive)(canonical_json({"payload": payload}))
    _, paths = records.mask_payload(payload, [], sensitive)
    assert might is may_hold_one
    assert bool(paths) is may_hold_one  # the walk finds one exactly when the test says it may


def test_sensitive_names_that_are_not_plain_ascii_always_walk():
    assert records.sensitive_key_test(frozenset({"kennwort\u00df"}))(b'{"a":1}') is True
    assert records.sensitive_key_test(frozenset())(b'{"password":1}') is False


def test_a_sensitive_key_in_a_non_ascii_record_is_masked_in_the_store(ship, signer):
    with signer.session(session_id="s1") as session:
        session.intent("refund", {"note": "zürich ✓", "nested": [{"Api_Key": "sk-live-1"}]})
        session.output("Done.")
    ship(signer.session_log())
    intent = AuditEvent.objects.get(kind="intent")
    assert intent.payload["args"]["nested"][0]["Api_Key"] == records.MASK
    assert intent.masked_paths == ["/args/nested/0/Api_Key"]


def test_a_gzip_body_is_stored_as_sent_and_verified_from_it(ship, signer, settings):
    records_sent = sign_session(signer, "s1") + sign_session(signer, "s2")
    sent = gzip.compress(body_of(records_sent))
    assert ship(records_sent, compress=True).status_code == 202
    batch = Batch.objects.get()
    opened = records.unseal(batch.body)
    # The body as the agent sent it (compressed), behind the API's mark; not the inflated bytes.
    assert opened.startswith(records.FORM_CHECKED_GZIP)
    assert gzip.decompress(opened[len(records.FORM_CHECKED_GZIP):]) == body_of(records_sent)
    assert len(opened) == len(records.FORM_CHECKED_GZIP) + len(sent) and len(sent) < batch.byte_count
    assert batch.status == BatchStatus.VERIFIED and batch.event_count == 8
    items, form_checked = records.unseal_batch(batch.body)
    assert form_checked and items == json.loads(body_of(records_sent))["records"]


def test_a_stored_gzip_body_is_verified_even_if_the_size_limit_was_lowered_since(identity, signer, settings):
    body = body_of(sign_session(signer, "s1"))
    batch = Batch.objects.create(
        agent=Agent.objects.get(name=identity.name), key_id=identity.key_id, record_count=4, byte_count=len(body),
        body=records.seal_checked_batch(body, gzipped=gzip.compress(body)),
    )
    settings.WARDEN_AUDIT_MAX_BATCH_BYTES = 100  # the body was within the limit when it was received
    outcome = verification.verify_batch(batch.pk)
    assert (outcome.events, outcome.quarantined) == (4, 0)


def test_an_identity_body_is_stored_inflated_as_before(ship, signer):
    assert ship(sign_session(signer, "s1")).status_code == 202
    opened = records.unseal(Batch.objects.get().body)
    assert opened.startswith(records.FORM_CHECKED) and not opened.startswith(records.FORM_CHECKED_GZIP)
