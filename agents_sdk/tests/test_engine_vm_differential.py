"""regorus' compiled VM and its interpreter must give the library the same decisions.

The embedded engine decides the library on the VM and everything else on the interpreter
(agents_sdk.engine.regorus_backend), so a construct the VM mis-evaluates makes a decision
depend on whether an organisation module happens to be present. Both paths are run here on
the seeded corpus and on realistic samples, without the backend's per-input fallback.
"""

from __future__ import annotations

import json
import re

import pytest
import regorus

from agents_sdk.engine import load_modules
from agents_sdk.engine.corpus import DATA, SEED, corpus, decision_summary
from agents_sdk.engine.regorus_backend import Session
from agents_sdk.engine.vm_safety import vm_hazards
from agents_sdk.tests.conftest import REPO_ROOT

LIBRARY = load_modules(REPO_ROOT / "rego", relative_to=REPO_ROOT)
PACK = {p: s for p, s in LIBRARY.items() if not p.endswith("_test.rego")}
QUERY = "data.warden.decision"
# The corpus registry, and a sparse one as a new environment's bundle has it (no agents, no
# held_agents, no approvals): a reference into an absent registry member is where the VM
# went wrong. (registry, corpus inputs): both paths on each, about 3.5 s on this machine.
REGISTRIES = {
    "corpus": (DATA, 4000),
    "sparse": (
        {"warden_registry": {"environment": "finance", "agents": {}, "tools": {"pay_invoice": {"scopes": []}}}},
        500,
    ),
}


def _call(agent: str, tool: str, args: dict, **context) -> dict:
    return {
        "agent": {"id": agent, "name": agent, "owner": "alice@example.com"},
        "action": {"type": "tool_call", "tool": tool, "args": args},
        "context": {"session_id": "s-1", "environment": "prod", "time": "2026-01-01T00:00:00Z", **context},
    }


SAMPLES = [
    _call("support-bot", "http_request", {"url": "https://api.example.com/x"}),  # plain, allowed URL
    _call("support-bot", "http_request", {"url": "https://attacker.net/x"}),
    _call("support-bot", "email_send", {"to": "Bob <bob@example.com>, not-an-address"}, approval_token="apr-valid"),
    _call("support-bot", "email_send", {"to": "x@evil.com"}, approval_token="apr-valid"),
    _call("reader-bot", "ticket_read", {"id": 7}, approval_token="apr-valid"),  # detector hold, with a token
    _call("support-bot", "ticket_read", {"id": 7}, approval_token="apr-valid"),
    _call("support-bot", "git_push", {"branch": "+HEAD:refs/heads/main"}, approval_token="apr-valid"),
    _call("support-bot", "file_delete", {"path": "/prod/x"}, approval_token="apr-valid"),
]


def _test_calls(source: str):
    """The `call(...)` and `with_context(call(...), ...)` expressions of a Rego test file."""
    for match in re.finditer(r"\b(with_context|call)\(", source):
        end, depth, quote = match.end(), 1, ""
        while end < len(source) and depth:
            char = source[end]
            if quote:
                if char == "\\" and quote == '"':
                    end += 1
                elif char == quote:
                    quote = ""
            elif char in '"`':
                quote = char
            elif char in "()":
                depth += 1 if char == "(" else -1
            end += 1
        yield source[match.start() : end]


def library_test_inputs() -> tuple[dict, list[dict]]:
    """The fixtures' registry and the inputs the library's Rego tests decide, evaluated by
    the interpreter from the tests' own `call(...)` expressions (those that use only
    literals; the rest read test-local variables)."""
    engine = regorus.Engine()
    engine.set_rego_v0(False)
    for path, source in sorted(LIBRARY.items()):
        engine.add_policy(path, source)
    expressions = sorted({e for p, s in LIBRARY.items() if p.endswith("_test.rego") for e in _test_calls(s)})
    inputs = []
    for expression in expressions:
        query = "x := " + re.sub(r"\b(with_context|call)\(", r"data.warden_test.\1(", expression)
        try:
            rows = json.loads(engine.eval_query_as_json(query)).get("result") or []
        except RuntimeError:
            continue
        inputs.extend(row["bindings"]["x"] for row in rows[:1])
    registry = json.loads(engine.eval_query_as_json("x := data.warden_test.registry"))["result"][0]["bindings"]["x"]
    return {"warden_registry": registry}, inputs


@pytest.fixture(scope="module", params=[*sorted(REGISTRIES), "library tests"])
def paths(request):
    if request.param == "library tests":
        data, inputs = library_test_inputs()
        assert len(inputs) >= 140, len(inputs)
    else:
        data, size = REGISTRIES[request.param]
        inputs = [*SAMPLES, *corpus(SEED, size)]
    session = Session(PACK, data)
    assert session.use_vm and session.vm_hazards == []
    vm = session._vm(QUERY)
    assert vm is not None, "the library no longer compiles for the VM"

    def on_vm(request: dict):
        vm.set_input_json(json.dumps(request))
        text = vm.execute()
        return decision_summary(json.loads(text)) if text != '"<undefined>"' else "undefined"

    def interpreted(request: dict):
        return decision_summary(session._evaluate_interpreted(QUERY, request))

    return on_vm, interpreted, inputs


def test_vm_and_interpreter_agree_on_corpus_samples_and_library_tests(paths):
    on_vm, interpreted, inputs = paths
    disagreements = []
    for index, request in enumerate(inputs):
        ours, theirs = on_vm(request), interpreted(request)
        if ours != theirs:
            disagreements.append((index, json.dumps(request)[:200], ours, theirs))
    assert disagreements == [], f"{len(disagreements)} of {len(inputs)}: {disagreements[:5]}"


# The engine bug, kept visible: if a regorus upgrade fixes it, the check may be relaxed.
REPRO = """package p
import rego.v1
f(x) := "a" if x == 1
s contains y if { y := f(input.x) }
t contains k if { some k in [1, 2]; y := f(input.x) }
u contains y if { y := f(input.x); is_string(y) }
"""


def _vm_value(module: str, rule: str):
    program = regorus.Program.compile_from_modules("{}", [("p.rego", module)], [f"data.p.{rule}"])
    vm = regorus.Rvm()
    vm.load_program(program)
    vm.set_data_json("{}")
    vm.set_input_json('{"x": 3}')
    return json.loads(vm.execute())


def test_the_vm_binds_undefined_assignments_and_the_check_finds_them():
    assert _vm_value(REPRO, "s") == ["<undefined>"]  # OPA and the interpreter: []
    assert _vm_value(REPRO, "t") == [1, 2]  # OPA and the interpreter: []
    assert _vm_value(REPRO, "u") == []  # a later statement reads y: correct
    engine = regorus.Engine()
    engine.set_rego_v0(False)
    engine.add_policy("org/p.rego", REPRO)
    hazards = vm_hazards(engine.get_ast_as_json())
    assert [h.split(": ")[0] for h in hazards] == ["org/p.rego:4:19", "org/p.rego:5:37"]


def test_a_library_module_with_the_construct_is_decided_by_the_interpreter(monkeypatch):
    path = "rego/warden/egress.rego"
    weakened = PACK[path].replace("\tis_string(ambiguity) #", "\t#")
    assert weakened != PACK[path]
    monkeypatch.setattr("agents_sdk.engine.regorus_backend._library_only", lambda modules: True)
    session = Session(PACK | {path: weakened}, DATA)
    assert not session.use_vm
    assert session.vm_hazards and session.vm_hazards[0].startswith(f"{path}:")
    request = SAMPLES[0]
    assert session.evaluate(QUERY, request)["effect"] == "allow"
