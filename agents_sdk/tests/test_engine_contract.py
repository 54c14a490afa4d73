"""The input contract in Python, and engine errors failing closed on every engine path."""

from __future__ import annotations

import re

import pytest

from agents_sdk.engine import RegoEngine, load_modules
from agents_sdk.engine.contract import input_violations, malformed_input_decision, parse_request
from agents_sdk.engine.corpus import DATA, SEED, corpus, decision_summary
from agents_sdk.engine.verified_library import library_digests, verified_digests
from agents_sdk.tests.conftest import REPO_ROOT

PACK = {
    path: source
    for path, source in load_modules(REPO_ROOT / "rego", relative_to=REPO_ROOT).items()
    if not path.endswith("_test.rego")
}
REQUEST = {"agent": {"id": "support-bot"}, "action": {"tool": "file_delete", "args": {"path": "/prod/x"}}}


@pytest.fixture(scope="module")
def policy():
    return RegoEngine().compile(PACK, DATA)


def test_the_verified_library_digests_match_rego():
    # Regenerate with `python -m agents_sdk.engine.verified_library rego` after changing the pack.
    assert verified_digests() == frozenset(library_digests(REPO_ROOT / "rego"))


@pytest.mark.parametrize(
    "text, lossy",
    [
        ('{"amount": 100.000000000000001}', "100.000000000000001"),
        ('{"amount": 18446744073709551617}', "18446744073709551617"),
        ('{"amount": 1e400}', "1e400"),
    ],
)
def test_numbers_json_would_round_are_reported(text, lossy):
    _, violations = parse_request(text)
    assert [lossy in expectation for _, expectation in violations] == [True]


def test_numbers_that_survive_parsing_are_not_reported():
    value, violations = parse_request('{"a": 0.1, "b": 100, "c": 9007199254740992, "d": -2.5e-3}')
    assert violations == []
    assert value == {"a": 0.1, "b": 100, "c": 9007199254740992, "d": -2.5e-3}


def test_nan_is_not_json():
    with pytest.raises(ValueError):
        parse_request('{"a": NaN}')


@pytest.mark.parametrize(
    "request_, field",
    [
        ([], "input"),
        ({"agent": "support-bot", "action": {"tool": "x"}}, "agent"),
        ({"agent": {"id": "a\x00"}, "action": {"tool": "x"}}, "agent.id"),
        ({"agent": {"id": "ａ"}, "action": {"tool": "x"}}, "agent.id"),
        ({"agent": {"id": "a"}, "action": {"tool": "x", "args": ["p"]}}, "action.args"),
        ({"agent": {"id": "a", "scopes": "read"}, "action": {"tool": "x"}}, "agent.scopes"),
        ({"agent": {"id": "a"}, "action": {"tool": "x"}, "context": {"on_behalf_of": "orchestrator"}}, "context.on_behalf_of"),
        ({"agent": {"id": "a"}, "action": {"tool": "x"}, "context": {"approval_token": ["t"]}}, "context.approval_token"),
        ({"agent": {"id": "a"}, "action": {"tool": "x"}, "context": {"counters": {"agent": {"n": 2**64}}}}, "context.counters.agent.n"),
        ({"agent": {"id": "a"}, "action": {"tool": "x", "args": {"s": "\ud800"}}}, "input.action.args.s"),
        ({"agent": {"id": "a"}, "action": {"tool": "x", "args": {"n": float("nan")}}}, "input.action.args.n"),
        ({"agent": {"id": "a"}, "action": {"tool": "x", "args": {1: "x"}}}, "input.action.args"),
    ],
)
def test_hostile_shapes_name_the_field(request_, field):
    assert field in [f for f, _ in input_violations(request_)]


def test_python_contract_and_pack_agree_on_the_corpus(policy):
    # Where the Python contract finds a violation the pack names the same fields.
    checked = 0
    for request in corpus(SEED, 3000):
        violations = input_violations(request)
        if not violations or any(f.startswith("input.") or f == "input" for f, _ in violations):
            continue  # text JSON cannot carry: no engine sees it
        checked += 1
        decision = policy.decide(request)
        pack_fields = {
            re.match(r"Input field input\.(\S+) must", r["message"]).group(1)
            for r in decision["reasons"]
            if r["rule"] == "malformed-input"
        }
        assert pack_fields == {f for f, _ in violations}, request
        python_decision = malformed_input_decision(violations)
        assert decision_summary(python_decision)[0] == "deny"
    assert checked > 100


# -- engine errors fail closed --------------------------------------------------------

FAULTY_HOLD = """package warden.org.faulty

import rego.v1

approval_required contains {"rule": "org-hold", "message": "held"} if {
	glob.match("a*", [], input.action.args.note)
}
"""


def test_an_error_inside_an_organisation_approval_rule_denies(policy):
    faulty = RegoEngine().compile(PACK | {"org/faulty.rego": FAULTY_HOLD}, DATA)
    request = {"agent": {"id": "support-bot"}, "action": {"tool": "ticket_read", "args": {"note": "a\x00b"}}}
    decision = faulty.decide(request)
    assert decision["effect"] == "deny"
    assert [r["rule"] for r in decision["reasons"]] == ["engine-error"]
    assert faulty.decide({**request, "action": {"tool": "ticket_read", "args": {"note": "ab"}}})["effect"] == "require_approval"


def _library_rule_bodies() -> list[tuple[str, str, int]]:
    """(file, "head:rule id", offset of the body's opening brace) of each library deny/hold
    rule, and (file, "gate", offset) of each definition that adds a gated group to deny."""
    found = []
    for path, source in sorted(PACK.items()):
        for match in re.finditer(r'\n([a-z_]+) contains \{\n\t"rule": "([a-z-]+)",.*?\n\} if \{\n', source, re.S):
            found.append((path, f"{match.group(1)}:{match.group(2)}", match.end()))
        for match in re.finditer(r"\ndeny contains reason if \{\n", source):
            found.append((path, "gate", match.end()))
    return found


def _category(request) -> object:
    action = request.get("action") if isinstance(request, dict) else None
    tool = action.get("tool") if isinstance(action, dict) else None
    spec = DATA["warden_registry"]["tools"].get(tool) if isinstance(tool, str) else None
    return spec.get("category") if isinstance(spec, dict) else None


# When the VM enters each gated group (the gate rules in delegation.rego, egress.rego and
# shell.rego); every other definition is entered on every input.
GATES = {
    "delegation_deny": lambda request: isinstance(request, dict) and "delegation" in request,
    "egress_deny": lambda request: _category(request) == "network",
    "shell_deny": lambda request: _category(request) == "shell",
}


# Fails for any named tool, not for the empty input the compile check evaluates.
FAULT = '\tto_number(object.get(input, ["action", "tool"], "0"))\n'


def _fault_fails(request) -> bool:
    """Whether FAULT is an error on this input (object.get needs an object; to_number
    takes numbers, booleans, null and numeric text)."""
    if not isinstance(request, dict):
        return True
    action = request.get("action")
    if not isinstance(action, dict) or "tool" not in action:
        return False
    tool = action["tool"]
    if isinstance(tool, str):
        return bool(re.search(r"[a-df-zA-DF-Z_]", tool)) and tool.strip().lower().lstrip("+-") not in {"inf", "nan", "infinity"}
    return isinstance(tool, (list, dict))


@pytest.fixture(scope="module")
def decided(policy):
    """The first 12,000 corpus inputs on which FAULT fails, with their rule ids."""
    return [(request, decision_summary(policy.decide(request))[1]) for request in corpus(SEED, 12_000) if _fault_fails(request)]


@pytest.mark.parametrize("path, rule, at", _library_rule_bodies(), ids=lambda v: v if isinstance(v, str) else "")
def test_fault_injected_into_any_library_rule_fails_closed(policy, decided, path, rule, at):
    """A builtin error injected at the top of each deny/approval rule body: wherever the
    body is entered the decision is an engine-error deny, never an answer without that
    rule. The rules of a gated group (GATES) are entered only behind their gate, so
    elsewhere the answer is the pack's own; every rule is entered on an input it fires for."""
    faulty = RegoEngine().compile({**PACK, path: PACK[path][:at] + FAULT + PACK[path][at:]}, DATA)
    assert faulty._session_of_this_thread() is not None
    head, _, rule_id = rule.partition(":")
    entered = GATES.get(head, lambda request: True)
    # An input this rule's id fires for and on which this definition is entered.
    witness = next((request for request, rules in decided if rule_id in rules and entered(request)), None)
    assert rule == "gate" or witness is not None, f"no corpus input reaches {rule}"
    engine_error = ("deny", ("engine-error",))
    for request in list(corpus(SEED, 200)) + ([witness] if witness is not None else []):
        got = decision_summary(faulty.decide(request))
        if _fault_fails(request) and entered(request):
            assert got[:2] == engine_error, (rule, request)
        else:
            # The body was not entered, or FAULT did not fail: the pack's own answer.
            assert got == decision_summary(policy.decide(request)) or got[:2] == engine_error, (rule, request)


@pytest.mark.parametrize(
    "args",
    [{"s": "\ud800"}, {"\ud800": 1}, {"n": float("inf")}, {"n": float("nan")}, {"x": {"\ud800"}}, {"o": object()}],
    ids=["surrogate", "surrogate-key", "inf", "nan", "surrogate-in-set", "object"],
)
def test_input_no_engine_can_take_is_an_engine_error_deny_not_a_crash(policy, args):
    # A lone surrogate made regorus' interpreter crash the process (segmentation fault).
    decision = policy.decide({"agent": {"id": "support-bot"}, "action": {"tool": "shell", "args": args}})
    assert decision["effect"] == "deny"
    assert [r["rule"] for r in decision["reasons"]] == ["engine-error"]
