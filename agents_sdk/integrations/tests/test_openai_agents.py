"""OpenAI Agents SDK: tool guardrails, driven by the SDK's own ScriptedModel (agents.testing)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("agents")

from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.testing import ScriptedModel, assistant_message, function_call

from agents_sdk.integrations import summarize_result
from agents_sdk.integrations.openai_agents import govern_function_tool, warden_guardrails
from agents_sdk.integrations.tests.policy import (
    UNREACHABLE,
    file_functions,
    governed,
    kinds,
    signed_log,
    with_approvals,
)

set_tracing_disabled(True)  # no trace export: there is no network here


@pytest.fixture
def plain_tools(entered):
    """Tools as someone else wrote them: no guardrails."""
    return [function_tool(function) for function in file_functions(entered)]


def run(guard, tools, *calls):
    model = ScriptedModel(
        [
            *[[function_call(name, args, call_id=f"call-{i}")] for i, (name, args) in enumerate(calls)],
            [assistant_message("done")],
        ]
    )
    agent = Agent(name="ops", model=model, tools=[govern_function_tool(t, guard) for t in tools])
    result = Runner.run_sync(agent, "tidy up")
    model.assert_complete()
    return result, model


def tool_outputs(model) -> list[str]:
    """What the model was sent back as tool outputs, in its last call's input."""
    return [
        item["output"]
        for item in model.last_call.input
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    ]


def test_denied_prod_delete_never_runs_and_the_model_reads_the_reason(plain_tools, entered):
    guard = governed("intern-bot")
    result, model = run(guard, plain_tools, ("file_delete", {"path": "/prod/db.sqlite"}))

    assert entered == []
    assert tool_outputs(model) == [
        (
            "missing-scope: Tool file_delete requires scope write:files, which agent intern-bot does not hold; "
            "no-prod-deletes: Production file deletion requires human approval"
        )
    ]
    assert result.final_output == "done"
    assert kinds(signed_log(guard)) == [
        ("intent", "file_delete", {"path": "/prod/db.sqlite"}),
        ("decision", "deny", ["missing-scope", "no-prod-deletes"]),
        ("result", "file_delete"),
    ]


def test_held_prod_delete_reads_waiting_for_human_approval(plain_tools, entered):
    guard = governed("support-bot")
    _, model = run(guard, plain_tools, ("file_delete", {"path": "/prod/db.sqlite"}))

    assert entered == []
    assert tool_outputs(model) == [
        "waiting for human approval: no-prod-deletes: Production file deletion requires human approval"
    ]
    assert [k[:2] for k in kinds(signed_log(guard))] == [
        ("intent", "file_delete"),
        ("decision", "require_approval"),
        ("result", "file_delete"),
    ]


def test_allowed_call_runs_and_its_result_is_signed(plain_tools, entered):
    guard = governed("support-bot")
    _, model = run(guard, plain_tools, ("file_read", {"path": "/srv/notes.txt"}))

    assert entered == [("file_read", "/srv/notes.txt")]
    assert tool_outputs(model) == ["contents of /srv/notes.txt"]
    records = signed_log(guard)
    assert kinds(records) == [
        ("intent", "file_read", {"path": "/srv/notes.txt"}),
        ("decision", "allow", []),
        ("result", "file_read"),
    ]
    assert records[2]["payload"]["summary"] == summarize_result("contents of /srv/notes.txt")


def test_guardrails_on_a_tool_you_write(entered):
    guard = governed("support-bot")
    inputs, outputs = warden_guardrails(guard)

    @function_tool(tool_input_guardrails=[inputs], tool_output_guardrails=[outputs])
    def file_delete(path: str) -> str:
        """Delete a file."""
        entered.append(path)
        return "deleted"

    model = ScriptedModel(
        [[function_call("file_delete", json.dumps({"path": "/prod/a"}), call_id="c1")], [assistant_message("ok")]]
    )
    Runner.run_sync(Agent(name="ops", model=model, tools=[file_delete]), "go")
    assert entered == []
    assert tool_outputs(model)[0].startswith("waiting for human approval: ")


def test_the_documented_example_runs(monkeypatch, capsys):
    from agents_sdk.integrations.tests.policy import run_doc_example

    run_doc_example("openai-agents", monkeypatch, capsys)


# Human approval (agents_sdk.approvals) through the guardrails: the held call is filed, and
# runs only under a grant, once.


@pytest.mark.parametrize("on_approval", ["raise", "wait"])
def test_a_held_call_with_the_control_plane_unreachable_is_spooled_and_never_runs(plain_tools, entered, tmp_path,
                                                                                     on_approval):
    guard = with_approvals(tmp_path, on_approval=on_approval)
    _, model = run(guard, plain_tools, ("file_delete", {"path": "/prod/db.sqlite"}),
                   ("file_delete", {"path": "/prod/db.sqlite"}))

    assert entered == []
    assert tool_outputs(model) == [UNREACHABLE, UNREACHABLE]
    assert guard.approvals.spooled() == 1  # the same held action twice: one request to send


def test_a_granted_call_runs_once_and_its_replay_is_refused(plain_tools, entered, tmp_path):
    args = {"path": "/prod/db.sqlite"}
    guard = with_approvals(tmp_path, grant=("file_delete", args))
    with guard.context(approval_token="grant-1"):
        _, model = run(guard, plain_tools, ("file_delete", args), ("file_delete", args))

    assert entered == [("file_delete", "/prod/db.sqlite")]
    assert tool_outputs(model) == [
        "deleted /prod/db.sqlite",
        "approval-grant-rejected: Approval grant grant-1 does not bind this action: consumed",
    ]
    approvals = [r["payload"]["event"] for r in signed_log(guard) if r["kind"] == "approval"]
    assert approvals == ["consumed", "refused"]
