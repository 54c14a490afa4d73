"""verify_records: names the first bad record and why."""

from __future__ import annotations

import base64
import copy

import pytest

from agents_sdk.errors import RecordFormatError, VerificationError
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import GENESIS_HASH, ActionSigner, record_hash, signing_bytes
from agents_sdk.verify import (
    AGENT_MISMATCH,
    BAD_SIGNATURE,
    BROKEN_CHAIN,
    MALFORMED,
    SEQUENCE_GAP,
    SESSION_MISMATCH,
    UNKNOWN_KEY,
    public_key_map,
    verify_records,
)

from .conftest import sign_session


def keys_of(*identities):
    return {identity.key_id: identity.public_key for identity in identities}


def resign(identity, record):
    """Sign ``record`` again with ``identity`` (what only the key holder can do)."""
    record["signature"] = base64.b64encode(identity.sign(signing_bytes(record))).decode()
    return record


def rechain(identity, records):
    """Recompute every prev_hash and signature, keeping seq as given."""
    last = {}
    for record in records:
        chain = (record["agent"], record["session_id"])
        record["prev_hash"] = last.get(chain, GENESIS_HASH)
        resign(identity, record)
        last[chain] = record_hash(record)
    return records


def positions(log, session_id):
    return [i for i, r in enumerate(log) if r["session_id"] == session_id]


# -- good logs ---------------------------------------------------------------------------


def test_an_untouched_log_verifies(identity, signed_log):
    result = verify_records(signed_log, keys_of(identity))
    assert result.ok and bool(result)
    assert result.failure is None
    assert (result.records, result.sessions) == (8, 2)
    result.raise_for_failure()


def test_an_empty_log_verifies_nothing():
    result = verify_records([], {})
    assert result.ok
    assert (result.records, result.sessions) == (0, 0)


def test_two_agents_sharing_a_session_id_each_keep_their_own_chain(identity):
    triage = AgentIdentity.create("triage-bot", "support@example.com", ["read:tickets"])
    first, second = ActionSigner(identity), ActionSigner(triage)
    sign_session(first, "shared")
    sign_session(second, "shared")
    log = [r for pair in zip(first.session_log(), second.session_log()) for r in pair]
    result = verify_records(log, keys_of(identity, triage))
    assert result.ok, result.failure
    assert (result.records, result.sessions) == (8, 2)


def test_keys_may_be_given_as_base64_pem_or_raw_bytes(identity, signed_log):
    raw = base64.b64decode(identity.public_key_b64)
    for key in (identity.public_key_b64, identity.public_key_pem, raw):
        assert verify_records(signed_log, {identity.key_id: key}).ok
    assert verify_records(signed_log, public_key_map([identity.public_key_b64])).ok


def test_a_key_filed_under_the_wrong_key_id_is_the_callers_error(identity, other_identity, signed_log):
    with pytest.raises(VerificationError, match=f"given for key id {identity.key_id}"):
        verify_records(signed_log, {identity.key_id: other_identity.public_key})


def test_verification_does_not_modify_the_records(identity, signed_log):
    before = copy.deepcopy(signed_log)
    signed_log[3]["payload"]["summary"] = "tampered"
    tampered = copy.deepcopy(signed_log)
    verify_records(signed_log, keys_of(identity))
    assert signed_log == tampered != before


# -- tampering ---------------------------------------------------------------------------


def test_one_changed_payload_byte_is_a_bad_signature_naming_the_record(identity, signed_log):
    target = 7
    signed_log[target]["payload"]["output"] = signed_log[target]["payload"]["output"].replace("✓", "✗")
    result = verify_records(signed_log, keys_of(identity))
    assert not result.ok
    assert result.failure.index == target
    assert result.failure.reason == BAD_SIGNATURE
    assert result.failure.record_id == signed_log[target]["record_id"]
    assert result.failure.session_id == "session-b"
    assert result.failure.seq == 3
    assert result.records == target


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("record_id", "00000000-0000-4000-8000-000000000000"),
        ("time", "2020-01-01T00:00:00.000000Z"),
        ("agent", "mallory-bot"),
        ("session_id", "session-c"),
        ("seq", 7),
    ],
)
def test_any_changed_signed_field_is_a_bad_signature(identity, signed_log, field, value):
    signed_log[5][field] = value
    result = verify_records(signed_log, keys_of(identity))
    assert (result.failure.index, result.failure.reason) == (5, BAD_SIGNATURE)


def test_a_changed_signature_is_a_bad_signature(identity, signed_log):
    signature = bytearray(base64.b64decode(signed_log[2]["signature"]))
    signature[10] ^= 0x01
    signed_log[2]["signature"] = base64.b64encode(bytes(signature)).decode()
    result = verify_records(signed_log, keys_of(identity))
    assert (result.failure.index, result.failure.reason) == (2, BAD_SIGNATURE)


def test_a_deleted_record_breaks_the_chain_at_the_next_record_of_its_session(identity, signed_log):
    a = positions(signed_log, "session-a")
    deleted = signed_log.pop(a[1])
    a_after = positions(signed_log, "session-a")
    result = verify_records(signed_log, keys_of(identity))
    assert result.failure.reason == BROKEN_CHAIN
    assert result.failure.index == a_after[1]
    assert result.failure.seq == deleted["seq"] + 1
    assert "records are missing" in result.failure.message


def test_a_deleted_first_record_breaks_the_chain(identity, signed_log):
    del signed_log[0]
    result = verify_records(signed_log, keys_of(identity))
    assert (result.failure.index, result.failure.reason) == (1, BROKEN_CHAIN)
    assert "earlier records are missing" in result.failure.message


def test_two_swapped_records_are_named(identity, signed_log):
    a = positions(signed_log, "session-a")
    i, j = a[1], a[2]
    signed_log[i], signed_log[j] = signed_log[j], signed_log[i]
    result = verify_records(signed_log, keys_of(identity))
    assert (result.failure.index, result.failure.reason) == (i, BROKEN_CHAIN)
    assert "seq jumps from 0 to 2, so records are missing or out of order" in result.failure.message


def test_a_replayed_record_is_named(identity, signed_log):
    signed_log.insert(3, copy.deepcopy(signed_log[2]))
    result = verify_records(signed_log, keys_of(identity))
    assert (result.failure.index, result.failure.reason) == (3, BROKEN_CHAIN)
    assert "it chains to record 0 (seq 0), an earlier record of its session" in result.failure.message


def test_a_record_signed_by_an_untrusted_key_is_an_unknown_key(identity, other_identity, signed_log):
    intruder = ActionSigner(other_identity)
    sign_session(intruder, "session-a")
    signed_log.insert(5, intruder.session_log()[0])
    result = verify_records(signed_log, keys_of(identity))
    assert (result.failure.index, result.failure.reason) == (5, UNKNOWN_KEY)
    assert other_identity.key_id in result.failure.message


def test_a_record_signed_by_another_key_but_claiming_the_trusted_key_is_a_bad_signature(
    identity, other_identity, signed_log
):
    signed_log[4]["payload"] = {"summary": "forged"}
    signed_log[4]["kind"] = "result"
    resign(other_identity, signed_log[4])  # key_id still names the trusted key
    result = verify_records(signed_log, keys_of(identity, other_identity))
    assert (result.failure.index, result.failure.reason) == (4, BAD_SIGNATURE)


def test_the_first_bad_record_is_named_when_there_are_several(identity, signed_log):
    signed_log[6]["payload"]["summary"] = "tampered later"
    signed_log[2]["payload"]["effect"] = "deny"
    result = verify_records(signed_log, keys_of(identity))
    assert result.failure.index == 2


def test_a_gap_in_seq_with_an_intact_chain_is_a_sequence_gap(identity):
    signer = ActionSigner(identity)
    sign_session(signer, "s")
    log = signer.session_log()
    log[2]["seq"] = 5
    log[3]["seq"] = 6
    rechain(identity, log)  # only the key holder can do this
    result = verify_records(log, keys_of(identity))
    assert (result.failure.index, result.failure.reason) == (2, SEQUENCE_GAP)
    assert "expected seq 2, found 5" in result.failure.message


def test_a_record_chained_to_another_session_is_a_session_mismatch(identity, signed_log):
    b = positions(signed_log, "session-b")
    a = positions(signed_log, "session-a")
    record = signed_log[b[1]]
    record["prev_hash"] = record_hash(signed_log[a[0]])
    resign(identity, record)
    result = verify_records(signed_log, keys_of(identity))
    assert (result.failure.index, result.failure.reason) == (b[1], SESSION_MISMATCH)
    assert "session 'session-a'" in result.failure.message


def test_a_key_used_by_the_wrong_agent_is_an_agent_mismatch(identity, signed_log):
    assert verify_records(signed_log, keys_of(identity), key_agents={identity.key_id: "billing-bot"}).ok
    result = verify_records(signed_log, keys_of(identity), key_agents={identity.key_id: "triage-bot"})
    assert (result.failure.index, result.failure.reason) == (0, AGENT_MISMATCH)


def test_raise_for_failure_raises_with_the_failure(identity, signed_log):
    signed_log[1]["payload"]["effect"] = "deny"
    result = verify_records(signed_log, keys_of(identity))
    with pytest.raises(VerificationError, match="record 1 .*bad_signature") as caught:
        result.raise_for_failure()
    assert caught.value.failure is result.failure


# -- malformed records -------------------------------------------------------------------


def _break(record, how):
    if how == "not an object":
        return ["a", "list"]
    if how == "unparseable line":
        return RecordFormatError("line 3: not valid JSON: Expecting value", line=3)
    record = dict(record)
    if how == "missing field":
        del record["prev_hash"]
    elif how == "extra field":
        record["note"] = "unsigned"
    elif how == "short key id":
        record["key_id"] = record["key_id"][:-1]
    elif how == "uppercase prev_hash":
        record["prev_hash"] = record["prev_hash"].upper()
    elif how == "negative seq":
        record["seq"] = -1
    elif how == "boolean seq":
        record["seq"] = False
    elif how == "bad time":
        record["time"] = "yesterday"
    elif how == "unknown kind":
        record["kind"] = "thought"
    elif how == "payload not an object":
        record["payload"] = "x"
    elif how == "signature not base64":
        record["signature"] = "not base64!"
    elif how == "short signature":
        record["signature"] = base64.b64encode(b"x" * 63).decode()
    elif how == "empty session id":
        record["session_id"] = ""
    elif how == "NaN in payload":
        record["payload"] = {**record["payload"], "x": float("nan")}
    return record


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("not an object", "must be a JSON object"),
        ("unparseable line", "not valid JSON"),
        ("missing field", "missing field(s): prev_hash"),
        ("extra field", "unexpected field(s): note"),
        ("short key id", "key_id must be 64 lowercase hex digits"),
        ("uppercase prev_hash", "prev_hash must be 64 lowercase hex digits"),
        ("negative seq", "seq must be a non-negative integer"),
        ("boolean seq", "seq must be a non-negative integer"),
        ("bad time", "time must be an RFC 3339 timestamp"),
        ("unknown kind", "kind 'thought' is not one of"),
        ("payload not an object", "payload is not an object"),
        ("signature not base64", "signature must be the base64"),
        ("short signature", "signature must be the base64"),
        ("empty session id", "session_id must be a non-empty string"),
        ("NaN in payload", "has no JSON form"),
    ],
)
def test_malformed_records_are_named(identity, signed_log, how, message):
    signed_log[3] = _break(signed_log[3], how)
    result = verify_records(signed_log, keys_of(identity))
    assert (result.failure.index, result.failure.reason) == (3, MALFORMED)
    assert message in result.failure.message
