"""The tool catalog's argument schemas: the pack, the Guard and `warden sidecar` refuse the
same arguments with the same `malformed-args` reasons (agents_sdk/engine/args_schema.py,
rego/warden/args_schema.rego)."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents_sdk.engine.args_schema import args_violations, schema_problems
from agents_sdk.guard import EmbeddedBackend, Guard
from agents_sdk.identity import AgentIdentity
from agents_sdk.sidecar import Sidecar, parse_config
from agents_sdk.tests.signed_bundles import BundleServer, RSASigner, build_bundle, library_modules, registry
from agents_sdk.tests.test_sidecar import opa_config, request

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "status": {"enum": ["open", "closed"]},
        "labels": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "note": {"type": ["string", "null"], "maxLength": 20},
    },
    "required": ["id"],
    "additionalProperties": False,
}

HOSTILE = [
    {"id": "7"}, {"id": [7]}, {"id": 7.5}, {"id": True}, {"id": None}, {"id": {"$gt": 0}},
    {"id": 7, "status": "OPEN"}, {"id": 7, "status": ["open"]}, {"id": 7, "labels": "a"},
    {"id": 7, "labels": ["a", 1]}, {"id": 7, "labels": ["a"] * 4}, {"id": 7, "note": "x" * 21},
    {"id": 7, "Id": 8}, {"id": 7, "ｉｄ": 8}, {"id": 7, "path": "/prod/x"}, {}, {"status": "open"},
]


def schema_registry() -> dict:
    data = copy.deepcopy(registry())
    data["warden_registry"]["tools"]["ticket_update"] = {"scopes": ["read:tickets"], "args_schema": SCHEMA}
    return data


def call(args, tool="ticket_update"):
    return {"agent": {"id": "support-bot"}, "action": {"type": "tool_call", "tool": tool, "args": args},
            "context": {"time": "2026-01-01T00:00:00Z"}}


def schema_reasons(decision) -> set[tuple[str, str]]:
    return {(r["rule"], r["message"]) for r in decision["reasons"] if r["rule"] == "malformed-args"}


@pytest.fixture(scope="module")
def backend():
    return EmbeddedBackend.from_modules(library_modules(), schema_registry())


def test_the_pack_and_the_python_check_refuse_the_same_hostile_arguments(backend):
    for args in HOSTILE:
        decision = backend.evaluate("data.warden.decision", call(args))
        expected = {("malformed-args", f"Argument args.{name} of tool ticket_update must be {why}")
                    for name, why in args_violations(args, SCHEMA)}
        assert expected, args
        assert decision["effect"] == "deny"
        assert schema_reasons(decision) == expected, args


def test_the_guard_and_the_sidecar_refuse_before_evaluating_with_the_same_answer(backend, tmp_path):
    signer = RSASigner("warden-test")
    bot = AgentIdentity.create("support-bot", "alice@example.com", ["read:tickets"])
    guard = Guard(bot, backend)
    with BundleServer() as server:
        server.state.publish(build_bundle(signer, revision="schema", data=schema_registry()))
        sidecar = Sidecar(parse_config(opa_config(server, signer, tmp_path)), addr="127.0.0.1:0").start()
        try:
            assert sidecar.bundles.wait_until_ready(10)
            for args in HOSTILE + [{"id": 7}]:
                input = guard.build_input("ticket_update", args, time="2026-01-01T00:00:00Z")
                in_process = guard.decide(input)
                status, answer = request(sidecar, "POST", "/v1/data/warden/decision", {"input": input})
                assert status == 200
                remote = answer["result"]
                assert in_process.as_dict()["effect"] == remote["effect"], args
                assert in_process.as_dict()["reasons"] == remote["reasons"], args
                # Checked before evaluating: the only reasons are the schema's (the pack
                # would add none, since support-bot may call ticket_update).
                assert {r["rule"] for r in remote["reasons"]} <= {"malformed-args"}
                assert remote["effect"] == ("allow" if args == {"id": 7} else "deny")
        finally:
            sidecar.stop()


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=25),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
NAMES = st.sampled_from(["id", "status", "labels", "note", "Id", "path", "labels ", ""]) | st.text(max_size=4)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(NAMES, VALUES, max_size=5))
def test_any_arguments_get_the_same_schema_answer_from_the_pack_and_from_python(backend, args):
    json.dumps(args, allow_nan=False)
    decision = backend.evaluate("data.warden.decision", call(args))
    expected = {("malformed-args", f"Argument args.{name} of tool ticket_update must be {why}")
                for name, why in args_violations(args, SCHEMA)}
    assert schema_reasons(decision) == expected
    if expected:
        assert decision["effect"] == "deny"


@pytest.mark.parametrize(("schema", "problem"), [
    ([], "args_schema: must be a JSON object"),
    ({"type": "array"}, "args_schema.type"),
    ({"properties": {"a": {"type": "str"}}}, "args_schema.properties.a.type"),
    ({"properties": {"a": {"pattern": "^x$"}}}, "args_schema.properties.a.pattern: not supported"),
    ({"properties": {"a": {"enum": [1]}}}, "args_schema.properties.a.enum"),
    ({"properties": {"a": {"maxLength": 2.5}}}, "args_schema.properties.a.maxLength"),
    ({"properties": {"a": {"items": {"type": "string", "maxLength": 3}}}}, "args_schema.properties.a.items"),
    ({"oneOf": []}, "args_schema.oneOf: not supported"),
    ({"required": "a"}, "args_schema.required"),
    ({"additionalProperties": {}}, "args_schema.additionalProperties"),
])
def test_schemas_the_pack_cannot_enforce_are_refused_naming_the_keyword(schema, problem):
    assert any(p.startswith(problem) for p in schema_problems(schema)), schema_problems(schema)


def test_a_supported_schema_has_no_problems():
    assert schema_problems(SCHEMA) == []


def test_the_documented_schema_is_the_one_tested_here():
    from agents_sdk.tests.conftest import REPO_ROOT

    text = (REPO_ROOT / "docs" / "rego-engine.md").read_text("utf-8")
    section = text[text.index("### Tool argument schemas"):]
    block = section[section.index("```json") + len("```json"):section.index("```", section.index("```json") + 7)]
    assert json.loads(block) == SCHEMA
