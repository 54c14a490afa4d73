"""Haystack 3.x: an Agent with Warden's before_tool/after_tool hooks, driven by MockChatGenerator."""

from __future__ import annotations

import pytest

pytest.importorskip("haystack")

from haystack.components.agents import Agent
from haystack.components.generators.chat import MockChatGenerator
from haystack.dataclasses import ChatMessage, ToolCall
from haystack.tools import tool

from agents_sdk.integrations import summarize_result
from agents_sdk.integrations.haystack import warden_hooks
from agents_sdk.integrations.tests.policy import (
    UNREACHABLE,
    file_functions,
    governed,
    kinds,
    signed_log,
    with_approvals,
)


@pytest.fixture
def tools(entered):
    return [tool(function) for function in file_functions(entered)]


def run(guard, tools, *calls):
    responses = [
        ChatMessage.from_assistant(tool_calls=[ToolCall(tool_name=name, arguments=args, id=f"call-{i}")])
        for i, (name, args) in enumerate(calls)
    ]
    agent = Agent(
        chat_generator=MockChatGenerator(responses=[*responses, "done"]), tools=tools, hooks=warden_hooks(guard)
    )
    return agent.run(messages=[ChatMessage.from_user("tidy up")])


def tool_results(result):
    return [r for m in result["messages"] for r in m.tool_call_results]


def test_denied_prod_delete_never_runs_and_the_model_reads_the_reason(tools, entered):
    guard = governed("intern-bot")
    result = run(guard, tools, ("file_delete", {"path": "/prod/db.sqlite"}))

    assert entered == []
    (denied,) = tool_results(result)
    assert denied.error is True
    assert denied.result == (
        "missing-scope: Tool file_delete requires scope write:files, which agent intern-bot does not hold; "
        "no-prod-deletes: Production file deletion requires human approval"
    )
    assert result["last_message"].text == "done"
    assert kinds(signed_log(guard)) == [
        ("intent", "file_delete", {"path": "/prod/db.sqlite"}),
        ("decision", "deny", ["missing-scope", "no-prod-deletes"]),
        ("result", "file_delete"),
    ]


def test_held_prod_delete_reads_waiting_for_human_approval(tools, entered):
    guard = governed("support-bot")
    result = run(guard, tools, ("file_delete", {"path": "/prod/db.sqlite"}))

    assert entered == []
    (held,) = tool_results(result)
    assert (
        held.result == "waiting for human approval: no-prod-deletes: Production file deletion requires human approval"
    )
    assert [k[:2] for k in kinds(signed_log(guard))] == [
        ("intent", "file_delete"),
        ("decision", "require_approval"),
        ("result", "file_delete"),
    ]


def test_allowed_call_runs_and_its_result_is_signed(tools, entered):
    guard = governed("support-bot")
    result = run(guard, tools, ("file_read", {"path": "/srv/notes.txt"}), ("file_delete", {"path": "/prod/x"}))

    assert entered == [("file_read", "/srv/notes.txt")]
    read, _held = tool_results(result)
    assert read.result == "contents of /srv/notes.txt" and not read.error
    records = signed_log(guard)
    assert kinds(records)[:3] == [
        ("intent", "file_read", {"path": "/srv/notes.txt"}),
        ("decision", "allow", []),
        ("result", "file_read"),
    ]
    assert records[2]["payload"]["summary"] == summarize_result("contents of /srv/notes.txt")
    assert [k[:2] for k in kinds(records)[3:]] == [
        ("intent", "file_delete"),
        ("decision", "require_approval"),
        ("result", "file_delete"),
    ]


def test_the_documented_example_runs(monkeypatch, capsys):
    from agents_sdk.integrations.tests.policy import run_doc_example

    run_doc_example("haystack", monkeypatch, capsys)


# Human approval (agents_sdk.approvals) through the hooks: the held call is filed, and runs
# only under a grant, once.


@pytest.mark.parametrize("on_approval", ["raise", "wait"])
def test_a_held_call_with_the_control_plane_unreachable_is_spooled_and_never_runs(tools, entered, tmp_path,
                                                                                     on_approval):
    guard = with_approvals(tmp_path, on_approval=on_approval)
    result = run(guard, tools, ("file_delete", {"path": "/prod/db.sqlite"}), ("file_delete", {"path": "/prod/db.sqlite"}))

    assert entered == []
    assert [r.result for r in tool_results(result)] == [UNREACHABLE, UNREACHABLE]
    assert guard.approvals.spooled() == 1  # the same held action twice: one request to send


def test_a_granted_call_runs_once_and_its_replay_is_refused(tools, entered, tmp_path):
    args = {"path": "/prod/db.sqlite"}
    guard = with_approvals(tmp_path, grant=("file_delete", args))
    with guard.context(approval_token="grant-1"):
        result = run(guard, tools, ("file_delete", args), ("file_delete", args))

    assert entered == [("file_delete", "/prod/db.sqlite")]
    ran, replayed = tool_results(result)
    assert ran.result == "deleted /prod/db.sqlite" and not ran.error
    assert replayed.result == "approval-grant-rejected: Approval grant grant-1 does not bind this action: consumed"
    approvals = [r["payload"]["event"] for r in signed_log(guard) if r["kind"] == "approval"]
    assert approvals == ["consumed", "refused"]
