"""Answers to repeated decision requests (agents_sdk.sidecar.answers.RepeatAnswers): the
same answer bytes but for a fresh decision id, a decision-log event of their own, never
across a new bundle or data, never for inputs decided against the clock, never for a
policy that reads it, and never past a stale bundle."""

from __future__ import annotations

import http.client
import json
import time
from types import SimpleNamespace

import pytest

from agents_sdk.sidecar import Sidecar, parse_config
from agents_sdk.sidecar.answers import Repeat, RepeatAnswers
from agents_sdk.tests.signed_bundles import build_bundle, library_modules, registry
from agents_sdk.tests.test_sidecar import EXAMPLES, opa_config, server, signer  # noqa: F401 - fixtures

DECISION = "/v1/data/warden/decision"
CLOCK_MODULE = "package warden.clock\n\nimport rego.v1\n\nlate if time.now_ns() > 0\n"


@pytest.fixture
def sidecar(server, signer, tmp_path):  # noqa: F811
    sidecar = Sidecar(parse_config(opa_config(server, signer, tmp_path)), addr="127.0.0.1:0").start()
    assert sidecar.bundles.wait_until_ready(10)
    yield sidecar
    sidecar.stop()


def post(sidecar: Sidecar, body: bytes) -> bytes:
    connection = http.client.HTTPConnection(*sidecar.address, timeout=5)
    try:
        connection.request("POST", DECISION, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        connection.close()


def body_of(input_value: dict) -> bytes:
    return json.dumps({"input": input_value}).encode()


def without_id(answer: bytes) -> dict:
    document = json.loads(answer)
    del document["decision_id"]
    return document


def test_a_repeated_request_gets_the_same_answer_with_its_own_id_and_log_event(server, sidecar):  # noqa: F811
    body = body_of(EXAMPLES[4])  # a card number in the arguments: the log masks it
    answers = [post(sidecar, body) for _ in range(3)]
    assert sidecar._repeats.hits == 2
    assert without_id(answers[0]) == without_id(answers[1]) == without_id(answers[2])
    ids = [json.loads(answer)["decision_id"] for answer in answers]
    assert len(set(ids)) == 3
    # Byte for byte the first answer's, but for the id.
    assert answers[2] == answers[0].replace(ids[0].encode(), ids[2].encode())
    assert sidecar.decision_logs.flush()
    events = server.state.decision_events()
    assert [event["decision_id"] for event in events] == ids
    for event in events:
        assert event["input"]["action"]["args"]["note"] == "**REDACTED**"
        assert event["erased"] == events[0]["erased"] and event["result"] == events[0]["result"]
        assert event["bundles"] == {"prod": {"revision": "rev-1"}}


def test_a_new_bundle_empties_the_repeated_answers(server, signer, sidecar):  # noqa: F811
    body = body_of(EXAMPLES[2])
    assert json.loads(post(sidecar, body))["result"]["allow"] is True
    assert json.loads(post(sidecar, body))["result"]["allow"] is True
    assert sidecar._repeats.hits == 1
    server.state.publish(build_bundle(signer, revision="rev-2", data=registry(**{"support-bot": "suspended"})))
    deadline = time.monotonic() + 10
    while sidecar.backend.revision != "rev-2" and time.monotonic() < deadline:
        time.sleep(0.01)
    result = json.loads(post(sidecar, body))["result"]
    assert result["effect"] == "deny" and "agent-not-active" in [r["rule"] for r in result["reasons"]]
    assert sidecar._repeats.hits == 1  # the suspension was decided, not answered from before


def test_an_answer_kept_under_one_revision_is_never_served_under_the_next(server, signer, sidecar):  # noqa: F811
    # Revision B has the very modules and data of A: the answer would be the same, but it is
    # B's to give (its log event names B), so the first request after the activation is decided.
    body = body_of(EXAMPLES[2])
    post(sidecar, body), post(sidecar, body)
    assert sidecar._repeats.hits == 1
    server.state.publish(build_bundle(signer, revision="rev-2"))
    deadline = time.monotonic() + 10
    while sidecar.backend.revision != "rev-2" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sidecar.backend.revision == "rev-2"
    post(sidecar, body)
    assert sidecar._repeats.hits == 1  # decided afresh under rev-2
    post(sidecar, body)
    assert sidecar._repeats.hits == 2  # and kept for rev-2
    assert sidecar.decision_logs.flush()
    revisions = [event["bundles"]["prod"]["revision"] for event in server.state.decision_events()]
    assert revisions == ["rev-1", "rev-1", "rev-2", "rev-2"]


def raw_post(sidecar: Sidecar, body: bytes, headers: dict[str, str]) -> bytes:
    connection = http.client.HTTPConnection(*sidecar.address, timeout=5)
    try:
        connection.request("POST", DECISION, body=body, headers=headers)
        response = connection.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        connection.close()


def test_the_same_bytes_get_the_same_answer_whatever_the_headers_and_each_log_names_its_caller(server, sidecar):  # noqa: F811
    # The key is the body alone: nothing else in a request changes a decision. A header cannot
    # make the table serve another body's answer, and a repeat's log event is the repeat's own
    # (its caller's address, not the first caller's).
    body = body_of(EXAMPLES[3])
    answers = [raw_post(sidecar, body, headers) for headers in (
        {"Content-Type": "application/json"}, {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "identity"}, {})]
    assert sidecar._repeats.hits == 3
    assert all(without_id(answer) == without_id(answers[0]) for answer in answers)
    spaced = body.replace(b": ", b":  ")  # other bytes, same input: decided, and decided alike
    assert without_id(raw_post(sidecar, spaced, {})) == without_id(answers[0])
    assert sidecar._repeats.hits == 3 and len(sidecar._repeats) == 2
    assert sidecar.decision_logs.flush()
    events = server.state.decision_events()
    assert len({event["requested_by"] for event in events}) == len(events) == 5  # one connection each


def test_large_bodies_are_decided_every_time(sidecar):
    big = {**EXAMPLES[2], "action": {**EXAMPLES[2]["action"], "args": {"id": 1, "note": "x" * 5000}}}
    body = body_of(big)
    assert len(body) > sidecar._repeats.max_body
    first, second = post(sidecar, body), post(sidecar, body)
    assert without_id(first) == without_id(second)
    assert sidecar._repeats.hits == 0 and len(sidecar._repeats) == 0


def test_inputs_with_an_approval_grant_or_a_delegation_chain_are_always_decided(sidecar):
    delegated = {**EXAMPLES[2], "context": {"delegation": [{"token": "not-a-chain"}]}}
    for input_value in (EXAMPLES[0], delegated):  # EXAMPLES[0] presents context.approval_token
        body = body_of(input_value)
        first, second = post(sidecar, body), post(sidecar, body)
        assert without_id(first) == without_id(second)
    assert sidecar._repeats.hits == 0 and len(sidecar._repeats) == 0


def test_a_bundle_whose_policy_reads_the_clock_is_never_answered_from_before(server, signer, tmp_path):  # noqa: F811
    modules = {**library_modules(), "warden/clock.rego": CLOCK_MODULE}
    server.state.publish(build_bundle(signer, modules=modules, data=registry()))
    sidecar = Sidecar(parse_config(opa_config(server, signer, tmp_path)), addr="127.0.0.1:0").start()
    try:
        assert sidecar.bundles.wait_until_ready(10)
        body = body_of(EXAMPLES[2])
        assert without_id(post(sidecar, body)) == without_id(post(sidecar, body))
        assert sidecar._repeats.hits == 0 and len(sidecar._repeats) == 0
    finally:
        sidecar.stop()


def test_a_stale_bundle_denies_a_repeated_request(sidecar, monkeypatch):
    body = body_of(EXAMPLES[2])
    post(sidecar, body)
    monkeypatch.setattr(sidecar.bundles, "age_problem", lambda: "the bundle is 2 h old, over the 1 h maximum")
    result = json.loads(post(sidecar, body))["result"]
    assert result["allow"] is False and [r["rule"] for r in result["reasons"]] == ["stale-bundle"]
    assert sidecar._repeats.hits == 0


def test_malformed_bodies_are_refused_every_time(sidecar):
    for body in (b'{"input": {"agent": ', b'{"input": {"bad": "\\ud800"}}'):
        connection = http.client.HTTPConnection(*sidecar.address, timeout=5)
        for _ in range(2):
            connection.request("POST", DECISION, body=body)
            response = connection.getresponse()
            answer = json.loads(response.read())
            assert response.status == 400 or answer["result"]["allow"] is False
        connection.close()
    assert len(sidecar._repeats) == 0


# -- the table ------------------------------------------------------------------------------


def backend(modules: dict[str, str]) -> SimpleNamespace:
    return SimpleNamespace(data={}, policy=SimpleNamespace(modules=modules))


def test_the_table_is_bounded_in_entries_and_body_size():
    answers = RepeatAnswers(max_entries=2, max_body=10)
    sound = backend({"warden/x.rego": "package warden.x\n"})
    assert answers.admits(b"0123456789", sound) and not answers.admits(b"0123456789!", sound)
    for key in (b"a", b"b", b"c"):
        answers.put(key, Repeat({}, "{}", ""))
    assert len(answers) == 2 and answers.get(b"a") is None and answers.get(b"c") is not None


def test_the_table_follows_the_engines_test_of_soundness(monkeypatch):
    answers = RepeatAnswers()
    assert answers.admits(b"{}", backend({"warden/x.rego": "package warden.x\n"}))
    answers.put(b"{}", Repeat({}, "{}", ""))
    assert not answers.admits(b"{}", backend({"warden/x.rego": CLOCK_MODULE}))  # new data: emptied, refused
    assert len(answers) == 0
    assert not answers.admits(b"{}", SimpleNamespace(data=None, policy=None))  # no bundle yet
    monkeypatch.setenv("WARDEN_DECISION_CACHE", "0")
    assert not answers.admits(b"{}", backend({"warden/x.rego": "package warden.x\n"}))
