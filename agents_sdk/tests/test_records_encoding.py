"""The signer builds each record's bytes once (payload validated while encoded, header
assembled around it, signature spliced in): those bytes must be exactly the canonical JSON
of docs/signed-records.md, and every shape the encoder would let through must still be
refused as before."""

from __future__ import annotations

import base64
import json
from collections import OrderedDict

import pytest

from agents_sdk.errors import CanonicalJSONError, SigningError
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner, canonical_json, record_hash, signable_payload, signing_bytes
from agents_sdk.verify import verify_records


def reference(value):
    """The canonical encoding as the specification states it, with no shortcut."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def nested(depth):
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


ACCEPTED = [
    {"path": "/prod/x"},
    {"t": (1, 2, [3, (4,)])},  # tuples: a walk, then accepted as arrays
    {"s": "a\\u0000b"},  # a backslash followed by u0000 is text, not U+0000
    {"s": "quote \" and \\ and \n and é and 😀 and \u2028"},
    {"brackets": "[[[[{{{{" * 20},  # brackets inside strings only look deep
    {"n": [0, -1, 2**63 - 1, 10**20, 1.5, -0.0, True, False, None]},
    OrderedDict([("b", 1), ("a", 2)]),
    {"deep": nested(63)},
]


@pytest.mark.parametrize("payload", ACCEPTED)
def test_the_fast_encoding_is_the_canonical_one(payload):
    encoded, copy = signable_payload(payload)
    assert encoded == reference(payload) == canonical_json(payload)
    assert json.loads(encoded) == copy


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        ({1: "a"}, CanonicalJSONError, "not a string"),
        ({"a": {True: 1}}, CanonicalJSONError, "not a string"),
        ({"a": {None: 1}}, CanonicalJSONError, "not a string"),
        ({"a": {1.5: 1, "b": 2}}, CanonicalJSONError, "not a string"),
        ({"x": float("nan")}, CanonicalJSONError, "no JSON form"),
        ({"x": b"bytes"}, CanonicalJSONError, "bytes is not a JSON value"),
        ({"x": "\ud800"}, CanonicalJSONError, "unpaired surrogate"),
        ({"x": "a\x00b"}, SigningError, "U\\+0000"),
        ({"a\x00": 1}, SigningError, "U\\+0000"),
        ({"deep": nested(65)}, SigningError, "deeper than 64"),
        ({"x": "y" * (1024 * 1024 + 1)}, SigningError, "at most"),
    ],
)
def test_what_the_encoder_would_let_through_is_still_refused(payload, error, message):
    with pytest.raises(error, match=message):
        signable_payload(payload)


@pytest.mark.parametrize("session_id", ["s-1", 'quote"and\\backslash', "séance-😀", "\u2028line"])
def test_spliced_record_bytes_are_the_canonical_json_of_the_record(session_id):
    identity = AgentIdentity.create("bytes-bot", "x@example.com")
    lines = []
    signer = ActionSigner(identity, sink=lines.append)
    with signer.session(session_id=session_id) as session:
        first = session.intent("file_delete", {"path": "/prod/é", "n": [1, 2.5]})
        second = session.decision("deny", [{"rule": "r", "message": "m", "controls": []}])
    assert second["prev_hash"] == record_hash(first)
    identity.public_key.verify(base64.b64decode(first["signature"]), signing_bytes(first))
    log = signer.session_log()
    assert log == [first, second] == lines
    assert verify_records(log, {identity.key_id: identity.public_key}).ok


def test_the_returned_record_the_sink_copy_and_the_log_share_nothing():
    identity = AgentIdentity.create("bytes-bot", "x@example.com")
    received = []
    signer = ActionSigner(identity, sink=received.append)
    with signer.session(session_id="s") as session:
        record = session.intent("t", {"path": "/a", "list": [1]})
    record["payload"]["args"]["list"].append(2)
    received[0]["payload"]["args"]["path"] = "/evil"
    assert signer.session_log()[0]["payload"]["args"] == {"path": "/a", "list": [1]}


PAYLOADS = [
    ("intent", {"tool": "t", "args": {}}), ("intent", {"tool": "", "args": {}}), ("intent", {"tool": "t", "args": []}),
    ("intent", {"tool": 1, "args": {}}), ("intent", {"args": {}}), ("decision", {"effect": "allow", "reasons": []}),
    ("decision", {"effect": "maybe", "reasons": []}), ("decision", {"effect": "deny", "reasons": ()}),
    ("decision", {"effect": ["allow"], "reasons": []}), ("result", {"summary": "ok"}), ("result", {"summary": None}),
    ("result", {}), ("output", {"output": 1}), ("nope", {"summary": "ok"}), ("result", ["summary"]),
    ("intent", OrderedDict(tool="t", args={})),
]


@pytest.mark.parametrize(("kind", "payload"), PAYLOADS)
def test_the_inline_payload_check_agrees_with_the_general_one(kind, payload):
    from agents_sdk.records.form import KIND_REQUIRED_FIELDS, payload_problem

    required = KIND_REQUIRED_FIELDS.get(kind)
    general = required is not None and isinstance(payload, dict) and all(
        name in payload and check(payload[name]) for name, check in required.items()
    )
    assert (payload_problem(kind, payload) is None) == general
