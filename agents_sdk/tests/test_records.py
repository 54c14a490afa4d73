"""Canonical JSON, signing and chaining of action records, JSONL files."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.exceptions import InvalidSignature

from agents_sdk.errors import CanonicalJSONError, RecordFormatError, SigningError
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import (
    GENESIS_HASH,
    RECORD_FIELDS,
    ActionSigner,
    canonical_json,
    loads_strict,
    read_jsonl,
    record_form_problem,
    record_hash,
    signing_bytes,
    utc_timestamp,
    write_jsonl,
)

# -- canonical JSON ----------------------------------------------------------------------


def test_canonical_json_sorts_keys_at_every_level_without_spaces():
    value = {"b": 1, "a": {"z": [3, {"y": True, "x": None}], "c": "d"}}
    assert canonical_json(value) == b'{"a":{"c":"d","z":[3,{"x":null,"y":true}]},"b":1}'


def test_canonical_json_is_independent_of_insertion_order():
    one = {"tool": "http_get", "args": {"url": "https://x", "headers": {"b": "2", "a": "1"}}}
    two = {"args": {"headers": {"a": "1", "b": "2"}, "url": "https://x"}, "tool": "http_get"}
    assert canonical_json(one) == canonical_json(two)


def test_canonical_json_writes_unicode_as_utf8_not_escapes():
    encoded = canonical_json({"msg": "Grüße, 東京 ✓ 🚀"})
    assert encoded == '{"msg":"Grüße, 東京 ✓ 🚀"}'.encode()
    assert b"\\u" not in encoded


def test_canonical_json_sorts_keys_by_code_point():
    # Python sorts str by code point; the audit pipeline must do the same.
    assert canonical_json({"é": 1, "z": 2, "Z": 3, "a": 4}) == '{"Z":3,"a":4,"z":2,"é":1}'.encode()


def test_canonical_json_escapes_only_what_json_requires():
    assert canonical_json({"s": 'quote " backslash \\ newline \n tab \t'}) == (
        b'{"s":"quote \\" backslash \\\\ newline \\n tab \\t"}'
    )


def test_canonical_json_numbers():
    assert canonical_json([0, -1, 10**20, 1.5, 0.1, True, False]) == b"[0,-1,100000000000000000000,1.5,0.1,true,false]"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_canonical_json_rejects_nan_and_infinity(bad):
    with pytest.raises(CanonicalJSONError, match=r"\$\.args\.x"):
        canonical_json({"args": {"x": bad}})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1: "a"}, "not a string"),
        ({"a": b"bytes"}, "bytes is not a JSON value"),
        ({"a": {1, 2}}, "set is not a JSON value"),
        ({"when": datetime.now(UTC)}, "datetime is not a JSON value"),
        ({"s": "\ud800"}, "unpaired surrogate"),
    ],
)
def test_canonical_json_rejects_values_without_one_json_form(value, message):
    with pytest.raises(CanonicalJSONError, match=message):
        canonical_json(value)


def test_canonical_json_errors_are_value_errors():
    assert issubclass(CanonicalJSONError, ValueError)


# -- records -----------------------------------------------------------------------------


def test_a_record_has_exactly_the_documented_fields(identity):
    signer = ActionSigner(identity)
    with signer.session(session_id="s-1") as session:
        record = session.intent("file_delete", {"path": "/prod/x"})
    assert set(record) == RECORD_FIELDS
    assert record["agent"] == "billing-bot"
    assert record["key_id"] == identity.key_id
    assert record["session_id"] == "s-1"
    assert record["seq"] == 0
    assert record["kind"] == "intent"
    assert record["payload"] == {"tool": "file_delete", "args": {"path": "/prod/x"}}
    assert record["prev_hash"] == GENESIS_HASH == "0" * 64
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", record["record_id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", record["time"])
    recorded = datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - recorded) < timedelta(seconds=5)


def test_signature_is_ed25519_over_canonical_json_without_the_signature(identity):
    signer = ActionSigner(identity)
    with signer.session() as session:
        record = session.decision("deny", reasons=[{"rule": "no-prod-deletes", "message": "Nein, danke"}])
    unsigned = {k: v for k, v in record.items() if k != "signature"}
    expected = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert signing_bytes(record) == expected
    identity.public_key.verify(base64.b64decode(record["signature"]), expected)
    with pytest.raises(InvalidSignature):
        identity.public_key.verify(base64.b64decode(record["signature"]), expected.replace(b"deny", b"allo"))


def test_records_chain_by_the_hash_of_the_previous_record_with_its_signature(identity):
    signer = ActionSigner(identity)
    with signer.session(session_id="s-1") as session:
        first = session.intent("http_get", {"url": "https://example.com"})
        second = session.decision("allow")
        third = session.result("200 OK, 1.2 KiB")
        fourth = session.output("The page says hello.")
    assert [r["seq"] for r in (first, second, third, fourth)] == [0, 1, 2, 3]
    for previous, record in [(first, second), (second, third), (third, fourth)]:
        expected = hashlib.sha256(
            json.dumps(previous, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        ).hexdigest()
        assert record["prev_hash"] == expected == record_hash(previous)


def test_each_session_has_its_own_chain(identity):
    signer = ActionSigner(identity)
    with signer.session(session_id="a") as a, signer.session(session_id="b") as b:
        a0 = a.intent("t", {})
        b0 = b.intent("t", {})
        a1 = a.result("ok")
        b1 = b.result("ok")
    assert (a0["seq"], a1["seq"], b0["seq"], b1["seq"]) == (0, 1, 0, 1)
    assert a0["prev_hash"] == b0["prev_hash"] == GENESIS_HASH
    assert a1["prev_hash"] == record_hash(a0)
    assert b1["prev_hash"] == record_hash(b0)
    assert [r["session_id"] for r in signer.session_log()] == ["a", "b", "a", "b"]
    assert signer.session_log("b") == [b0, b1]


def test_reopening_a_session_continues_its_chain(identity):
    signer = ActionSigner(identity)
    with signer.session(session_id="s") as session:
        first = session.intent("t", {})
    with signer.session(session_id="s") as session:
        second = session.result("ok")
    assert second["seq"] == 1
    assert second["prev_hash"] == record_hash(first)


def test_default_session_id_is_a_fresh_uuid(identity):
    signer = ActionSigner(identity)
    with signer.session() as one, signer.session() as two:
        pass
    assert one.session_id != two.session_id
    assert len(one.session_id) == 36


def test_extra_payload_fields_are_kept_and_signed(identity):
    signer = ActionSigner(identity)
    with signer.session() as session:
        record = session.record("decision", effect="require_approval", reasons=[], decision_id="d-1")
    assert record["payload"] == {"effect": "require_approval", "reasons": [], "decision_id": "d-1"}


@pytest.mark.parametrize(
    ("kind", "fields", "message"),
    [
        ("thought", {}, "kind 'thought' is not one of intent, decision, result, approval, output"),
        ("intent", {"args": {}}, "intent payload needs 'tool'"),
        ("intent", {"tool": "", "args": {}}, "'tool' has the wrong type"),
        ("intent", {"tool": "t", "args": ["x"]}, "'args' has the wrong type"),
        ("decision", {"effect": "maybe", "reasons": []}, "effect 'maybe' is not one of allow, deny, require_approval"),
        ("decision", {"effect": "deny"}, "decision payload needs 'reasons'"),
        ("result", {}, "result payload needs 'summary'"),
        ("output", {}, "output payload needs 'output'"),
    ],
)
def test_invalid_records_are_refused_and_do_not_advance_the_chain(identity, kind, fields, message):
    signer = ActionSigner(identity)
    with signer.session() as session:
        with pytest.raises(SigningError, match=re.escape(message)):
            session.record(kind, **fields)
        assert session.result("ok")["seq"] == 0
    assert len(signer.session_log()) == 1


def test_non_json_payload_is_refused_before_signing(identity):
    signer = ActionSigner(identity)
    with signer.session() as session, pytest.raises(CanonicalJSONError, match="payload.args.amount"):
        session.intent("refund", {"amount": float("nan")})
    assert signer.session_log() == []


def test_a_closed_session_refuses_records(identity):
    signer = ActionSigner(identity)
    with signer.session(session_id="s") as session:
        session.intent("t", {})
    with pytest.raises(SigningError, match="session 's' is closed"):
        session.result("late")


@pytest.mark.parametrize("session_id", ["", "x" * 201, 42])
def test_invalid_session_ids_are_refused(identity, session_id):
    with pytest.raises(SigningError, match="session_id"), ActionSigner(identity).session(session_id=session_id):
        pass


def test_session_log_returns_copies(identity):
    signer = ActionSigner(identity)
    with signer.session() as session:
        session.intent("t", {"path": "/a"})
    signer.session_log()[0]["payload"]["args"]["path"] = "/evil"
    assert signer.session_log()[0]["payload"]["args"]["path"] == "/a"


def test_caller_mutating_its_payload_after_recording_changes_nothing(identity):
    signer = ActionSigner(identity)
    args = {"path": "/a"}
    with signer.session() as session:
        session.intent("t", args)
        args["path"] = "/evil"
    assert signer.session_log()[0]["payload"]["args"] == {"path": "/a"}


def test_sink_receives_every_record_and_keep_log_false_keeps_none(identity):
    received = []
    signer = ActionSigner(identity, sink=received.append, keep_log=False)
    with signer.session(session_id="s") as session:
        session.intent("t", {})
        session.result("ok")
    assert [r["seq"] for r in received] == [0, 1]
    assert received[1]["prev_hash"] == record_hash(received[0])
    assert signer.session_log() == []


def test_concurrent_records_keep_one_gapless_chain_delivered_in_order(identity):
    delivered = []
    signer = ActionSigner(identity, sink=lambda record: delivered.append(record["seq"]))
    with signer.session(session_id="s") as session:

        def work():
            for _ in range(50):
                session.result("ok")

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    log = signer.session_log()
    assert [r["seq"] for r in log] == list(range(200))
    assert delivered == list(range(200))
    for previous, record in itertools.pairwise(log):
        assert record["prev_hash"] == record_hash(previous)


def test_utc_timestamp_converts_to_utc_and_refuses_naive_times():
    moment = datetime(2025, 1, 31, 13, 0, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    assert utc_timestamp(moment) == "2025-01-31T12:00:00.000005Z"
    with pytest.raises(SigningError, match="timezone-aware"):
        utc_timestamp(datetime(2025, 1, 31, 12, 0, 0))


# -- JSONL -------------------------------------------------------------------------------


def test_jsonl_round_trip_writes_one_canonical_record_per_line(signed_log, tmp_path):
    path = tmp_path / "log.jsonl"
    assert write_jsonl(path, signed_log) == len(signed_log)
    lines = path.read_bytes().splitlines()
    assert lines == [canonical_json(r) for r in signed_log]
    assert read_jsonl(path) == signed_log


def test_jsonl_append_adds_to_the_file(signed_log, tmp_path):
    path = tmp_path / "log.jsonl"
    write_jsonl(path, signed_log[:3])
    write_jsonl(path, signed_log[3:], append=True)
    assert read_jsonl(path) == signed_log


def test_read_jsonl_skips_blank_lines_and_names_a_bad_line(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"a":1}\n\n{"b":2}\n[1,2]\n')
    with pytest.raises(RecordFormatError, match="line 4: a record must be a JSON object") as caught:
        read_jsonl(path)
    assert caught.value.line == 4


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"a":1,"a":2}', "duplicate key 'a'"),
        ('{"a":NaN}', "NaN is not valid JSON"),
        ('{"a":Infinity}', "Infinity is not valid JSON"),
        ('{"a":', "not valid JSON"),
    ],
)
def test_read_jsonl_is_strict(tmp_path, line, message):
    path = tmp_path / "log.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(RecordFormatError, match=message):
        read_jsonl(path)


def test_write_jsonl_writes_nothing_when_a_record_is_not_json(tmp_path):
    path = tmp_path / "log.jsonl"
    with pytest.raises(CanonicalJSONError):
        write_jsonl(path, [{"a": 1}, {"b": float("nan")}])
    assert not path.exists()


# -- the record form contract (shared with the control plane) -----------------------------


def _one_record(**payload_args) -> dict:
    signer = ActionSigner(AgentIdentity.create("form-bot", "x@example.com"))
    with signer.session(session_id="form") as session:
        return session.intent("tool", payload_args)


def _nested(depth: int):
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


def test_a_signed_record_has_the_form_every_party_requires():
    record = _one_record(path="/tmp/x")
    assert record_form_problem(record) is None
    assert record_form_problem(record, canonical_uuid=True) is None
    assert record_form_problem(dict(record, record_id=record["record_id"].upper())) is None
    assert "lowercase" in record_form_problem(dict(record, record_id=record["record_id"].upper()), canonical_uuid=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(session_id="a\x00b"), "session_id: contains U+0000"),
        (lambda r: r.update(session_id="\ud800"), "session_id: contains an unpaired surrogate"),
        (lambda r: r.update(session_id="s" * 201), "session_id must be at most 200 characters"),
        (lambda r: r.update(agent=""), "agent must be a non-empty string"),
        (lambda r: r.update(seq=2**63), "seq must be a non-negative integer below 2**63"),
        (lambda r: r["payload"]["args"].update(k="\x00"), "payload.args.k: contains U+0000"),
        (lambda r: r["payload"]["args"].update({"\udc00": 1}), "(a key): contains an unpaired surrogate"),
        (lambda r: r["payload"]["args"].update(deep=_nested(900)), "nests deeper than 64 levels"),
        (lambda r: r["payload"]["args"].update(x=float("nan")), "nan has no JSON form"),
        (lambda r: r["payload"]["args"].update(x="y" * (1024 * 1024 + 1)), "at most 1048576"),
        (lambda r: r["payload"]["args"].update(many=["y" * 1024 * 1024] * 5), "more than 4194304 characters"),
    ],
)
def test_record_form_problem_names_what_the_store_cannot_hold(change, message):
    record = _one_record()
    change(record)
    assert message in record_form_problem(record)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"k": "\x00"}, "U\\+0000"),
        ({"k": "\ud800"}, "surrogate"),
        ({"deep": _nested(65)}, "deeper than 64"),
        ({"k": "y" * (1024 * 1024 + 1)}, "at most"),
    ],
)
def test_the_signer_refuses_what_the_control_plane_would_refuse(args, message):
    with pytest.raises((SigningError, CanonicalJSONError), match=message):
        _one_record(**args)


@pytest.mark.parametrize("session_id", ["a\x00b", "\udfff", "s" * 201, ""])
def test_the_signer_refuses_a_session_id_the_store_cannot_hold(session_id):
    signer = ActionSigner(AgentIdentity.create("form-bot", "x@example.com"))
    with pytest.raises(SigningError, match="session_id"), signer.session(session_id=session_id):
        pass


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
        ('{"a": NaN}', "NaN is not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"a": 1', "not valid JSON"),
        ("1" * 5000, "not valid JSON"),
    ],
)
def test_loads_strict_refuses_with_a_record_format_error(text, message):
    with pytest.raises(RecordFormatError, match=re.escape(message)):
        loads_strict(text)


def test_loads_strict_parses_the_same_body_from_a_shallow_or_a_deep_call_stack():
    """json's parser counts nesting against the recursion limit from the calling frame: a body
    900 levels deep must not parse in a test run and fail in a server whose stack is deeper."""
    body = "[" * 900 + "]" * 900

    def from_depth(frames: int):
        return loads_strict(body) if frames == 0 else from_depth(frames - 1)

    shallow = loads_strict(body)
    assert from_depth(600) == shallow
