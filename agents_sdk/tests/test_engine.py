"""The Rego engine interface and Warden's policy pack, through the default engine (regorus)."""

from __future__ import annotations

import gc
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agents_sdk.engine import (
    RegoCompileError,
    RegoEngine,
    RegoEngineError,
    discover_tests,
    fail_closed_decision,
    load_modules,
)
from agents_sdk.engine.errors import parse_regocpp_errors, parse_regorus_errors

REPO = Path(__file__).resolve().parents[2]
REGO = REPO / "rego"

REGISTRY = {
    "warden_registry": {
        "agents": {
            "support-bot": {"status": "active", "scopes": ["read:tickets", "write:files"]},
            "suspended-bot": {"status": "suspended", "scopes": ["read:tickets", "write:files"]},
        },
        "tools": {"file_delete": {"scopes": ["write:files"]}, "ticket_read": {"scopes": ["read:tickets"]}},
        "protected_paths": ["/prod/"],
    }
}

DESIGN_EXAMPLE = {
    "agent": {"id": "support-bot", "name": "Support bot", "owner": "alice@example.com", "scopes": ["read:tickets", "write:files"]},
    "action": {"type": "tool_call", "tool": "file_delete", "args": {"path": "/prod/x"}, "server": "files-mcp"},
    "context": {"session_id": "s-1", "environment": "prod", "time": "2026-01-01T00:00:00Z", "on_behalf_of": []},
}


@pytest.fixture(scope="module")
def pack():
    return {k: v for k, v in load_modules(REGO, relative_to=REPO).items() if not k.endswith("_test.rego")}


@pytest.fixture(scope="module")
def policy(pack):
    return RegoEngine().compile(pack, REGISTRY)


def test_syntax_error_names_file_line_and_column():
    source = "package broken\n\nallow if {\n  input.x ==\n}\n"
    with pytest.raises(RegoCompileError) as caught:
        RegoEngine().compile({"org/broken.rego": source})
    error = caught.value.errors[0]
    assert (error.file, error.line, error.column) == ("org/broken.rego", 5, 1)
    assert "expecting expression" in error.message
    assert "Stack backtrace" not in str(caught.value)


def test_unsafe_variable_is_refused_at_compile_not_first_decision():
    # Spaces, not a tab: regorus counts a tab as 4 columns (see docs/rego-engine.md).
    source = "package org\n\nok := 1\n\nallow if {\n  not_bound > 1\n}\n"
    with pytest.raises(RegoCompileError) as caught:
        RegoEngine().compile({"org/unsafe.rego": source})
    error = caught.value.errors[0]
    assert (error.file, error.line, error.column) == ("org/unsafe.rego", 6, 3)
    assert "unsafe" in error.message


def test_unknown_function_is_refused_at_compile():
    with pytest.raises(RegoCompileError) as caught:
        RegoEngine().compile({"org/fn.rego": "package org\n\nallow if no_such_builtin(input.x)\n"})
    assert caught.value.errors[0].line == 3
    assert "no_such_builtin" in caught.value.errors[0].message


def test_regorus_error_text_is_parsed_with_backtrace_removed():
    text = "\n--> a/b.rego:12:7\n  |\n12 | x {\n  |   ^\nerror: `if` keyword is required\n\nStack backtrace:\n   0: <unknown>\n"
    [error] = parse_regorus_errors(text)
    assert (error.file, error.line, error.column, error.message) == ("a/b.rego", 12, 7, "`if` keyword is required")


def test_regocpp_error_offsets_become_line_and_column():
    source = "package t\n\nallow if {\n  input.x ==\n}\n"
    text = "(rego-errorseq\n  (error 8:t/t.rego|32|2\n    (errormsg 24:Invalid boolean operator)))"
    [error] = parse_regocpp_errors(text, {"t/t.rego": source})
    assert (error.file, error.line, error.column, error.message) == ("t/t.rego", 4, 11, "Invalid boolean operator")


def test_empty_input_gets_the_fail_closed_object(policy):
    decision = policy.evaluate("data.warden.decision", {})
    assert decision["allow"] is False
    assert decision["effect"] == "deny"
    assert decision["obligations"] == {"log": True, "mask": []}
    assert {r["rule"] for r in decision["reasons"]} == {"malformed-input"}
    # one reason per field the contract needs, each naming it
    assert {r["message"] for r in decision["reasons"]} >= {
        "Input field input.agent must be an object",
        "Input field input.action.tool must be a non-empty string of printable ASCII",
    }


def test_design_example_decides_as_written(policy):
    decision = policy.decide(DESIGN_EXAMPLE)
    assert decision["allow"] is False
    assert decision["effect"] == "require_approval"
    [reason] = decision["reasons"]
    assert reason["rule"] == "no-prod-deletes"
    assert reason["message"] == "Production file deletion requires human approval"
    assert "eu_ai_act.art14(1)" in reason["controls"]


def test_delete_outside_prod_is_allowed(policy):
    request = {**DESIGN_EXAMPLE, "action": {**DESIGN_EXAMPLE["action"], "args": {"path": "/tmp/x"}}}
    assert policy.decide(request) == {"allow": True, "effect": "allow", "reasons": [], "obligations": {"log": True, "mask": []}}


def test_set_data_suspends_an_agent_at_next_decision_in_every_thread(pack):
    policy = RegoEngine().compile(pack, REGISTRY)
    request = {**DESIGN_EXAMPLE, "action": {"type": "tool_call", "tool": "ticket_read", "args": {}}}
    assert policy.decide(request)["effect"] == "allow"
    seen = []
    worker = threading.Thread(target=lambda: seen.append(policy.decide(request)["effect"]))
    worker.start()
    worker.join()
    suspended = {"warden_registry": {**REGISTRY["warden_registry"], "agents": {"support-bot": {"status": "suspended"}}}}
    policy.set_data(suspended)
    worker = threading.Thread(target=lambda: seen.append(policy.decide(request)["effect"]))
    worker.start()
    worker.join()
    assert seen == ["allow", "deny"]
    assert policy.decide(request)["effect"] == "deny"


def _compile_error() -> None:
    RegoEngine().compile({"p.rego": "package p\n\nx := y\n"})  # y is unsafe: found by the check


def _evaluation_error() -> None:
    """An evaluation error in a thread that has ended since: the session it made is its own."""
    policy = RegoEngine().compile({"p.rego": "package p\n\nx := y if { y := input.a / input.b }\n"})
    raised: list[BaseException] = []

    def evaluate() -> None:
        try:
            policy.evaluate("data.p.x", {"a": 1, "b": 0})
        except RegoEngineError as exc:
            raised.append(exc)

    worker = threading.Thread(target=evaluate)
    worker.start()
    worker.join()
    raise raised[0]


@pytest.mark.parametrize("fail", [_compile_error, _evaluation_error], ids=["compile", "evaluate"])
def test_a_kept_engine_error_leaves_no_engine_for_another_thread_to_drop(fail):
    """regorus' objects may only be dropped by the thread that made them. An engine error
    kept in a reference cycle (a test's pytest.raises, a status, a log record keeping the
    exception) is freed by the garbage collector on whichever thread runs it: its traceback
    must not hold the engine, or regorus leaks it and reports "unsendable"."""
    unraisable = []
    hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    gc.collect()
    gc.disable()
    try:
        def keep_in_a_cycle() -> None:
            try:
                fail()
            except RegoEngineError as exc:
                kept = exc  # noqa: F841 - the frame holds its own exception: a cycle only the collector frees
            else:
                raise AssertionError("no engine error")

        keep_in_a_cycle()
        collector = threading.Thread(target=gc.collect)
        collector.start()
        collector.join()
    finally:
        gc.enable()
        sys.unraisablehook = hook
    assert [str(u.exc_value) for u in unraisable] == []


def test_add_data_merges_into_existing_data(pack):
    policy = RegoEngine().compile(pack, REGISTRY)
    policy.add_data({"warden_registry": {"agents": {"new-bot": {"status": "active", "scopes": ["read:tickets"]}}}})
    request = {"agent": {"id": "new-bot"}, "action": {"tool": "ticket_read", "args": {}}}
    assert policy.decide(request)["effect"] == "allow"
    assert policy.decide(DESIGN_EXAMPLE)["effect"] == "require_approval"  # earlier agents kept


def test_decide_fails_closed_when_the_entry_point_is_missing():
    policy = RegoEngine().compile({"other.rego": "package other\n\nx := 1\n"})
    decision = policy.decide({"agent": {"id": "a"}})
    assert decision == fail_closed_decision("Policy gave no decision object")
    assert decision["allow"] is False


def test_concurrent_decisions_from_many_threads_agree(policy):
    results, errors = [], []

    def decide_many():
        try:
            for _ in range(200):
                results.append(policy.decide(DESIGN_EXAMPLE)["effect"])
        except Exception as exc:  # a panic from a thread-bound engine would land here
            errors.append(exc)

    threads = [threading.Thread(target=decide_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == ["require_approval"] * 800


def test_run_tests_passes_the_shipped_library():
    report = RegoEngine().run_tests(load_modules(REGO, relative_to=REPO))
    assert report.failed == 0, [f"{r.path}: {r.message}" for r in report.failures]
    assert report.passed >= 40
    assert report.ok


def test_run_tests_counts_a_broken_test_as_failed():
    modules = {
        "p/policy.rego": "package p\n\nanswer := 42\n",
        "p/policy_test.rego": (
            "package p_test\n\ntest_right if data.p.answer == 42\n\n"
            "test_wrong if data.p.answer == 41\n\ntest_undefined if data.p.missing == 1\n"
        ),
    }
    report = RegoEngine().run_tests(modules)
    assert (report.passed, report.failed) == (1, 2)
    assert {r.name for r in report.failures} == {"test_wrong", "test_undefined"}
    assert report.summary() == "1 passed, 2 failed"
    assert not report.ok


def test_tests_are_discovered_only_in_test_files():
    modules = {"a.rego": "package a\n\ntest_not_a_test := 1\n", "a_test.rego": "package a_test\n\ntest_x if true\n\ntest_x if false\n"}
    assert discover_tests(modules) == [("a_test.rego", "a_test", "test_x")]


def test_testrunner_prints_counts_and_fails_on_a_failure(tmp_path):
    (tmp_path / "p.rego").write_text("package p\n\nanswer := 42\n")
    (tmp_path / "p_test.rego").write_text("package p_test\n\ntest_ok if data.p.answer == 42\n\ntest_bad if data.p.answer == 1\n")
    run = subprocess.run([sys.executable, "-m", "agents_sdk.engine.testrunner", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 1
    assert "FAIL data.p_test.test_bad" in run.stdout
    assert run.stdout.strip().splitlines()[-1] == "1 passed, 1 failed"


def test_testrunner_fails_when_there_are_no_tests(tmp_path):
    (tmp_path / "p.rego").write_text("package p\n\nanswer := 42\n")
    run = subprocess.run([sys.executable, "-m", "agents_sdk.engine.testrunner", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stdout.strip().splitlines()[-1] == "0 passed, 0 failed"


def test_every_rule_reason_carries_the_controls_of_its_metadata(pack):
    """METADATA custom.controls and the controls in the rule's reason object must agree."""
    annotated = re.compile(
        r"# METADATA\n((?:#[^\n]*\n)+?)(?:[a-z]+_deny|deny|approval_required) contains \{\n\t\"rule\": \"([a-z-]+)\".*?\"controls\": \[(.*?)\]",
        re.DOTALL,
    )
    checked = 0
    for source in pack.values():
        for comment, rule, literal in annotated.findall(source):
            declared = re.search(r"#\s+controls: \[(.*)\]", comment).group(1)
            assert [c.strip() for c in declared.split(",")] == re.findall(r'"([^"]+)"', literal), rule
            assert re.search(r"#\s+severity: (info|low|medium|high|critical)", comment), rule
            checked += 1
    assert checked >= 15


def test_sdk_engine_imports_without_django():
    code = "import sys, agents_sdk.engine; assert not any(m == 'django' or m.startswith('django.') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def _interpreter_decision(pack, data, request):
    import regorus

    engine = regorus.Engine()
    engine.set_rego_v0(False)
    for path in sorted(pack):
        engine.add_policy(path, pack[path])
    engine.add_data(data)
    engine.set_input(request)
    return engine.eval_rule("data.warden.decision")


def _sample_requests():
    def call(agent, tool, args, **context):
        return {"agent": {"id": agent, "name": agent}, "action": {"type": "tool_call", "tool": tool, "args": args},
                "context": {"session_id": "s-1", **context}}

    return [
        DESIGN_EXAMPLE,
        {},
        call("support-bot", "ticket_read", {"id": 7}),
        call("support-bot", "ticket_read", {"note": "card 4111 1111 1111 1111", "n": [{"x": "5500-0000-0000-0004"}]}),
        call("support-bot", "file_delete", {"path": "/tmp/../prod/x", "k": "key=AKIAIOSFODNN7EXAMPLE"}),
        call("suspended-bot", "file_delete", {"path": "/prod/x"}, on_behalf_of=["ghost"]),
        call("ghost", "no_such_tool", {}),
        call("support-bot", "ticket_read", {}, counters={"agent": {"calls_per_minute": 500}}),
    ]


def test_decisions_run_on_the_compiled_vm_and_match_the_interpreter(pack, policy):
    session = policy._session_of_this_thread()
    if not session.use_vm:
        pytest.skip("REGORUS_NO_RVM is set")
    assert session._vm("data.warden.decision") is not None, "the default pack must compile for regorus' VM"
    for request in _sample_requests():
        assert policy.evaluate("data.warden.decision", request) == _interpreter_decision(pack, REGISTRY, request), request


def test_vm_follows_data_changes(pack):
    policy = RegoEngine().compile(pack, REGISTRY)
    request = {"agent": {"id": "support-bot"}, "action": {"tool": "ticket_read", "args": {}}}
    assert policy.decide(request)["effect"] == "allow"
    policy.add_data({"warden_registry": {"agents": {"support-bot": {"status": "suspended"}}}})
    assert policy.decide(request)["effect"] == "deny"


def test_input_the_vm_cannot_take_goes_to_the_interpreter(policy):
    # A set is not JSON: the interpreter takes it as a Rego set, which the input contract
    # (scopes are an array) refuses rather than judging.
    request = {"agent": {"id": "support-bot", "scopes": {"write:files"}}, "action": {"tool": "file_delete", "args": {"path": "/tmp/x"}}}
    decision = policy.decide(request)
    assert decision["effect"] == "deny"
    assert [r["message"] for r in decision["reasons"]] == ["Input field input.agent.scopes must be an array of strings when present"]


def test_modules_the_vm_refuses_fall_back_to_the_interpreter():
    source = "package warden\n\nimport rego.v1\n\ndecision := {\"effect\": \"allow\", \"n\": count([p | walk(input, [p, _])])}\n"
    policy = RegoEngine().compile({"w.rego": source})
    assert policy._session_of_this_thread()._vm("data.warden.decision") is None
    assert policy.evaluate("data.warden.decision", {"a": 1}) == {"effect": "allow", "n": 2}


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_policy_used_by_another_thread_never_drops_that_threads_engine_elsewhere(pack):
    """regorus engines belong to the thread that made them; dropping one on another thread
    leaks it with an 'unsendable' error. Sessions therefore live in each thread's storage."""
    import gc
    import threading

    policy = RegoEngine().compile(pack, REGISTRY)
    request = {"agent": {"id": "support-bot"}, "action": {"tool": "ticket_read", "args": {}}}
    go_on, used = threading.Event(), threading.Event()
    answers = []

    def worker():
        answers.append(policy.decide(request)["effect"])  # this thread now owns an engine
        used.set()
        go_on.wait(10)
        fresh = RegoEngine().compile(pack, REGISTRY)  # its first evaluation prunes the dead policy
        answers.append(fresh.decide(request)["effect"])

    thread = threading.Thread(target=worker)
    thread.start()
    used.wait(10)
    del policy
    gc.collect()  # the policy dies here, in the main thread; the worker's engine must not
    go_on.set()
    thread.join(10)
    assert answers == ["allow", "allow"]
