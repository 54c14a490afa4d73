"""AuthZEN Authorization API 1.0 on `warden sidecar`: conformance with the spec's examples,
the interop suite's todo scenario replayed, Warden's agent mapping, and hostile requests.

Everything goes through a real sidecar over HTTP, holding a signed bundle of the shipped pack.
"""

from __future__ import annotations

import http.client
import json

import pytest

from agents_sdk.sidecar import Sidecar, parse_config
from agents_sdk.sidecar.authzen import MAX_EVALUATIONS
from agents_sdk.tests.signed_bundles import BundleServer, RSASigner, build_bundle, library_modules, registry
from agents_sdk.tests.test_sidecar import opa_config

# The interop suite's todo scenario (openid/authzen interop/authzen-todo-backend/test/decisions.json,
# the 1.0 suite): each user's expected answer per action, and for update/delete per owner.
TODO_USERS = {
    "rick@the-citadel.com": ["todo:read", "todo:create", "todo:update", "todo:delete", "todo:any"],
    "morty@the-citadel.com": ["todo:read", "todo:create", "todo:update", "todo:delete"],
    "summer@the-smiths.com": ["todo:read", "todo:create", "todo:update", "todo:delete"],
    "beth@the-smiths.com": ["todo:read"],
    "jerry@the-smiths.com": ["todo:read"],
}
TODO_CASES = [  # (subject, action, resource, expected) exactly as the suite lists them
    *[(s, "can_read_user", {"type": "user", "id": "beth@the-smiths.com", "userID": "beth@the-smiths.com"}, True)
      for s in TODO_USERS],
    *[(s, "can_read_user", {"type": "user", "id": s, "userID": "opaque-identity"}, True) for s in TODO_USERS],
    *[(s, "can_read_todos", {"type": "todo", "id": "todo-1"}, True) for s in TODO_USERS],
    ("rick@the-citadel.com", "can_create_todo", {"type": "todo", "id": "todo-1"}, True),
    ("morty@the-citadel.com", "can_create_todo", {"type": "todo", "id": "todo-1"}, True),
    ("summer@the-smiths.com", "can_create_todo", {"type": "todo", "id": "todo-1"}, True),
    ("beth@the-smiths.com", "can_create_todo", {"type": "todo", "id": "todo-1"}, False),
    ("jerry@the-smiths.com", "can_create_todo", {"type": "todo", "id": "todo-1"}, False),
]
_OWNED = [  # (subject, owner, expected for update and for delete)
    ("rick@the-citadel.com", "rick@the-citadel.com", True),
    ("rick@the-citadel.com", "morty@the-citadel.com", True),
    ("morty@the-citadel.com", "rick@the-citadel.com", False),
    ("morty@the-citadel.com", "morty@the-citadel.com", True),
    ("summer@the-smiths.com", "rick@the-citadel.com", False),
    ("summer@the-smiths.com", "summer@the-smiths.com", True),
    ("beth@the-smiths.com", "rick@the-citadel.com", False),
    ("beth@the-smiths.com", "beth@the-smiths.com", False),
    ("jerry@the-smiths.com", "rick@the-citadel.com", False),
    ("jerry@the-smiths.com", "jerry@the-smiths.com", False),
]
TODO_CASES += [
    (s, action, {"type": "todo", "id": "7240d0db-8ff0-41ec-98b2-34a096273b9f", "ownerID": owner}, expected)
    for s, owner, expected in _OWNED for action in ("can_update_todo", "can_delete_todo")
]

TODO_POLICY = """package warden.org.todo

import rego.v1

# METADATA
# title: Only the owner (or an admin) changes a todo
deny contains {"rule": "todo-owner-only", "message": "Only the todo's owner or an admin may change it", "controls": []} if {
	input.action.tool in {"can_update_todo", "can_delete_todo"}
	input.action.resource.ownerID != input.agent.id
	not "todo:any" in data.warden_registry.agents[input.agent.id].scopes
}
"""


def todo_data() -> dict:
    data = registry()
    data["warden_registry"]["agents"].update(
        {user: {"status": "active", "owner": "todo-admin@example.com", "scopes": scopes}
         for user, scopes in TODO_USERS.items()})
    data["warden_registry"]["tools"].update({
        "can_read_user": {"scopes": ["todo:read"]}, "can_read_todos": {"scopes": ["todo:read"]},
        "can_create_todo": {"scopes": ["todo:create"]}, "can_update_todo": {"scopes": ["todo:update"]},
        "can_delete_todo": {"scopes": ["todo:delete"]},
    })
    return data


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    signer = RSASigner("warden-test")
    with BundleServer() as server:
        modules = {**library_modules(), "org/todo.rego": TODO_POLICY}
        server.state.publish(build_bundle(signer, modules=modules, data=todo_data(), revision="rev-authzen"))
        sidecar = Sidecar(parse_config(opa_config(server, signer, tmp_path_factory.mktemp("authzen"))),
                          addr="127.0.0.1:0").start()
        assert sidecar.bundles.wait_until_ready(10)
        sidecar.server = server
        yield sidecar
        sidecar.stop()


def call(sidecar, method: str, path: str, body=None, raw: bytes | None = None):
    connection = http.client.HTTPConnection(*sidecar.address, timeout=10)
    try:
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def evaluate(sidecar, body):
    status, answer = call(sidecar, "POST", "/access/v1/evaluation", body)
    assert status == 200, answer
    return answer


def agent_request(tool: str, args: dict | None = None, **context) -> dict:
    return {"subject": {"type": "agent", "id": "support-bot"},
            "action": {"name": tool, "properties": {"arguments": args or {}}},
            "resource": {"type": "mcp_server", "id": "tickets"},
            "context": context}


# -- the spec's metadata and examples ---------------------------------------------------------


def test_well_known_configuration_names_the_evaluation_endpoints_and_no_search(sidecar):
    status, document = call(sidecar, "GET", "/.well-known/authzen-configuration")
    assert status == 200
    assert document["policy_decision_point"] == sidecar.url
    assert document["access_evaluation_endpoint"] == sidecar.url + "/access/v1/evaluation"
    assert document["access_evaluations_endpoint"] == sidecar.url + "/access/v1/evaluations"
    assert not any(key.startswith("search") and key.endswith("endpoint") for key in document)
    assert call(sidecar, "POST", "/.well-known/authzen-configuration", {})[0] == 405
    status, answer = call(sidecar, "POST", "/access/v1/search/subject", {"subject": {"type": "agent"}})
    assert status == 404 and "not supported" in answer["message"]


def test_spec_example_evaluation_gets_a_boolean_decision(sidecar):
    # The HTTPS binding's example request: a user no registry knows, so a fail-closed false.
    answer = evaluate(sidecar, {"subject": {"type": "user", "id": "alice@acmecorp.com"},
                                "resource": {"type": "todo", "id": "1"}, "action": {"name": "can_read"},
                                "context": {"time": "1985-10-26T01:22-07:00"}})
    assert answer["decision"] is False
    assert answer["context"]["effect"] == "deny" and answer["context"]["reasons"]


def test_spec_example_batch_with_defaults_and_an_overridden_action(sidecar):
    body = {"subject": {"type": "user", "id": "rick@the-citadel.com"}, "context": {"time": "2024-05-31T15:22-07:00"},
            "action": {"name": "can_read_todos"},
            "evaluations": [{"resource": {"type": "todo", "id": "boxcarring.md"}},
                            {"resource": {"type": "todo", "id": "subject-search.md"}},
                            {"action": {"name": "can_delete_todo"},
                             "resource": {"type": "todo", "id": "x", "ownerID": "rick@the-citadel.com"}},
                            {"subject": {"type": "user", "id": "beth@the-smiths.com"}, "action": {"name": "can_create_todo"}}]}
    status, answer = call(sidecar, "POST", "/access/v1/evaluations", body)
    assert status == 200
    assert [e["decision"] for e in answer["evaluations"]] == [True, True, True, False]
    assert "decision" not in answer


@pytest.mark.parametrize(("semantic", "expected"), [
    ("execute_all", [True, False, True, False]),
    ("deny_on_first_deny", [True, False]),
    ("permit_on_first_permit", [True]),
])
def test_the_three_evaluation_semantics(sidecar, semantic, expected):
    items = [{"action": {"name": "can_read_todos"}}, {"action": {"name": "can_create_todo"}},
             {"action": {"name": "can_read_user"}}, {"action": {"name": "can_delete_todo"}}]
    body = {"subject": {"type": "user", "id": "beth@the-smiths.com"}, "resource": {"type": "todo", "id": "t"},
            "options": {"evaluations_semantic": semantic}, "evaluations": items}
    status, answer = call(sidecar, "POST", "/access/v1/evaluations", body)
    assert status == 200
    assert [e["decision"] for e in answer["evaluations"]] == expected


def test_permit_on_first_permit_goes_on_through_denies(sidecar):
    items = [{"action": {"name": "can_create_todo"}}, {"action": {"name": "can_delete_todo"}},
             {"action": {"name": "can_read_todos"}}, {"action": {"name": "can_read_user"}}]
    body = {"subject": {"type": "user", "id": "jerry@the-smiths.com"}, "resource": {"type": "todo", "id": "t"},
            "options": {"evaluations_semantic": "permit_on_first_permit"}, "evaluations": items}
    assert [e["decision"] for e in call(sidecar, "POST", "/access/v1/evaluations", body)[1]["evaluations"]] == [
        False, False, True]


def test_evaluations_without_an_array_answers_as_a_single_evaluation(sidecar):
    body = {"subject": {"type": "user", "id": "rick@the-citadel.com"}, "action": {"name": "can_read_todos"},
            "resource": {"type": "todo", "id": "t"}}
    for extra in ({}, {"evaluations": []}):
        status, answer = call(sidecar, "POST", "/access/v1/evaluations", {**body, **extra})
        assert status == 200 and answer["decision"] is True and "evaluations" not in answer


def test_interop_todo_suite_replayed(sidecar):
    assert len(TODO_CASES) == 40
    failures = []
    for subject, action, resource, expected in TODO_CASES:
        answer = evaluate(sidecar, {"subject": {"type": "user", "id": subject, "identity": "opaque"},
                                    "action": {"name": action}, "resource": resource})
        if answer["decision"] is not expected:
            failures.append((subject, action, resource, answer))
    assert failures == []
    # And in one boxcarred request, in order.
    body = {"evaluations": [{"subject": {"type": "user", "id": s}, "action": {"name": a}, "resource": r}
                            for s, a, r, _ in TODO_CASES]}
    status, answer = call(sidecar, "POST", "/access/v1/evaluations", body)
    assert status == 200
    assert [e["decision"] for e in answer["evaluations"]] == [expected for *_, expected in TODO_CASES]


# -- Warden's mapping: agents, reasons, obligations, approvals ----------------------------------


def test_agent_subject_is_enriched_from_the_registry_and_logged(sidecar):
    answer = evaluate(sidecar, agent_request("ticket_read", {"id": 1}, session_id="s-9"))
    assert answer["decision"] is True and answer["context"]["effect"] == "allow"
    assert {"id": "warden.log", "properties": {"signed": True}} in answer["context"]["obligations"]
    assert sidecar.decision_logs.flush()
    events = {e["decision_id"]: e for e in sidecar.server.state.decision_events()}
    event = events[answer["context"]["id"]]
    assert event["path"] == "warden/decision"
    assert event["input"]["agent"] == {"id": "support-bot", "name": "support-bot", "owner": "alice@example.com",
                                       "scopes": ["read:tickets", "write:files", "net:http", "payments:create"]}
    assert event["input"]["action"] == {"type": "tool_call", "tool": "ticket_read", "args": {"id": 1}, "server": "tickets"}
    assert event["input"]["context"] == {"session_id": "s-9"}


def test_subject_scopes_can_only_narrow(sidecar):
    request = agent_request("ticket_read")
    request["subject"]["properties"] = {"scopes": ["payments:create", "admin:everything"]}
    answer = evaluate(sidecar, request)
    assert answer["decision"] is False
    assert "missing-scope" in {r["rule"] for r in answer["context"]["reasons"]}


def test_deny_carries_rule_message_and_controls(sidecar):
    answer = evaluate(sidecar, agent_request("http_request", {"url": "https://evil.test/x"}))
    assert answer["decision"] is False
    reasons = answer["context"]["reasons"]
    assert reasons and all({"rule", "message", "controls"} <= set(r) for r in reasons)
    assert answer["context"]["reason"].startswith(reasons[0]["rule"] + ": ")


def test_mask_obligation_names_the_argument(sidecar):
    answer = evaluate(sidecar, agent_request("ticket_read", {"note": "card 4111 1111 1111 1111"}))
    masks = [o for o in answer["context"]["obligations"] if o["id"] == "warden.mask"]
    assert masks and "/action/args/note" in masks[0]["properties"]["pointers"]
    assert sidecar.decision_logs.flush()
    event = {e["decision_id"]: e for e in sidecar.server.state.decision_events()}[answer["context"]["id"]]
    assert "4111" not in json.dumps(event["input"])


def test_require_approval_returns_an_access_request_bound_to_the_exact_call(sidecar):
    answer = evaluate(sidecar, agent_request("payment_create", {"amount": 5}))
    assert answer["decision"] is False and answer["context"]["effect"] == "require_approval"
    access = answer["context"]["access_request"]
    assert access["status"] == "pending" and access["subject"] == {"type": "agent", "id": "support-bot"}
    assert access["action"]["name"] == "payment_create" and access["action"]["properties"]["arguments"] == {"amount": 5}
    from agents_sdk.approvals import args_sha256  # the hash a grant binds (docs/approvals.md)

    assert access["binding"] == {"agent_id": "support-bot", "tool": "payment_create",
                                 "arguments_sha256": args_sha256({"amount": 5})}
    assert access["approval"]["retry_with"] == "context.approval_token"


def test_coaz_mapping_user_subject_agent_in_context(sidecar):
    request = {"subject": {"type": "user", "id": "alice@example.com", "properties": {"department": "support"}},
               "action": {"name": "tools/call"},
               "resource": {"type": "mcp_tool", "id": "ticket_read", "properties": {"server": "tickets", "id": 7}},
               "context": {"agent": {"id": "support-bot"}}}
    answer = evaluate(sidecar, request)
    assert answer["decision"] is True
    assert sidecar.decision_logs.flush()
    event = {e["decision_id"]: e for e in sidecar.server.state.decision_events()}[answer["context"]["id"]]
    assert event["input"]["agent"]["id"] == "support-bot" and event["input"]["agent"]["type"] == "agent"
    assert event["input"]["action"]["tool"] == "ticket_read" and event["input"]["action"]["args"] == {"id": 7}
    assert event["input"]["context"]["user"] == {"type": "user", "id": "alice@example.com", "department": "support"}
    # The same call for a suspended or unknown agent in the context is refused.
    request["context"] = {"agent_id": "ghost-bot"}
    assert evaluate(sidecar, request)["decision"] is False


# -- hostile and malformed requests --------------------------------------------------------------


@pytest.mark.parametrize(("body", "field"), [
    ({"action": {"name": "x"}, "resource": {"type": "t", "id": "1"}}, "subject"),
    ({"subject": {"type": "agent"}, "action": {"name": "x"}, "resource": {"type": "t", "id": "1"}}, "subject.id"),
    ({"subject": {"type": "agent", "id": 5}, "action": {"name": "x"}, "resource": {"type": "t", "id": "1"}}, "subject.id"),
    ({"subject": {"type": "agent", "id": "a"}, "action": {}, "resource": {"type": "t", "id": "1"}}, "action.name"),
    ({"subject": {"type": "agent", "id": "a"}, "action": {"name": "x"}, "resource": "r"}, "resource"),
    ({"subject": {"type": "agent", "id": "a"}, "action": {"name": "x", "properties": []},
      "resource": {"type": "t", "id": "1"}}, "action.properties"),
    ({"subject": {"type": "agent", "id": "a"}, "action": {"name": "x"}, "resource": {"type": "t", "id": "1"},
      "context": []}, "context"),
])
def test_malformed_evaluation_is_a_400_naming_the_field(sidecar, body, field):
    status, answer = call(sidecar, "POST", "/access/v1/evaluation", body)
    assert status == 400 and answer["message"].startswith(field + ":")


def test_malformed_bodies(sidecar):
    assert call(sidecar, "POST", "/access/v1/evaluation", raw=b"{not json")[0] == 400
    assert call(sidecar, "POST", "/access/v1/evaluation", [1, 2])[0] == 400
    assert call(sidecar, "POST", "/access/v1/evaluation", raw=b"[" * 100_000 + b"]" * 100_000)[0] == 400
    assert call(sidecar, "GET", "/access/v1/evaluation")[0] == 405
    status, answer = call(sidecar, "POST", "/access/v1/evaluations",
                          {"evaluations": [{}] * (MAX_EVALUATIONS + 1)})
    assert status == 400 and str(MAX_EVALUATIONS) in answer["message"]
    status, answer = call(sidecar, "POST", "/access/v1/evaluations",
                          {"evaluations": [{}], "options": {"evaluations_semantic": "any"}})
    assert status == 400 and "evaluations_semantic" in answer["message"]


def test_one_bad_item_fails_closed_without_failing_the_batch(sidecar):
    body = {"subject": {"type": "agent", "id": "support-bot"}, "resource": {"type": "mcp_server", "id": "t"},
            "evaluations": [{"action": {"name": "ticket_read"}}, {"action": {"nom": "x"}}, "junk",
                            {"action": {"name": "ticket_read"}}]}
    status, answer = call(sidecar, "POST", "/access/v1/evaluations", body)
    assert status == 200
    decisions = answer["evaluations"]
    assert [d["decision"] for d in decisions] == [True, False, False, True]
    assert decisions[1]["context"]["error"]["status"] == 400 and "action.name" in decisions[1]["context"]["error"]["message"]
    assert decisions[2]["context"]["error"]["status"] == 400


def test_hostile_values_are_fail_closed_denies_never_errors(sidecar):
    raw = (b'{"subject": {"type": "agent", "id": "support-bot"}, "action": {"name": "ticket_read", '
           b'"properties": {"arguments": {"note": "\\ud800"}}}, "resource": {"type": "mcp_server", "id": "t"}}')
    status, answer = call(sidecar, "POST", "/access/v1/evaluation", raw=raw)
    assert status == 200 and answer["decision"] is False
    assert answer["context"]["reasons"][0]["rule"] == "malformed-input"
    for agent_id in ("support-bot\n", "support\u00e9bot", "x" * 5000):
        answer = evaluate(sidecar, {**agent_request("ticket_read"), "subject": {"type": "agent", "id": agent_id}})
        assert answer["decision"] is False
    deep: dict = {}
    for _ in range(200):
        deep = {"a": deep}
    answer = evaluate(sidecar, agent_request("ticket_read", deep))
    assert answer["decision"] is False and answer["context"]["reasons"][0]["rule"] == "malformed-input"
