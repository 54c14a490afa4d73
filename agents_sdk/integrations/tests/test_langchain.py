"""LangChain 1.x: create_agent with WardenMiddleware, driven by LangChain's own fake chat model."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain.agents")

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool

from agents_sdk.errors import ApprovalRequired, PolicyViolationError
from agents_sdk.integrations import summarize_result
from agents_sdk.integrations.langchain import WardenMiddleware, govern_tool
from agents_sdk.integrations.tests.policy import file_functions, governed, kinds, signed_log


class ScriptedChatModel(GenericFakeChatModel):
    """LangChain's fake chat model; create_agent binds tools, which the fake ignores."""

    def bind_tools(self, tools, **kwargs):
        return self


def script(*tool_calls: tuple[str, dict]) -> ScriptedChatModel:
    turns = [
        AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call-{i}", "type": "tool_call"}])
        for i, (name, args) in enumerate(tool_calls)
    ]
    return ScriptedChatModel(messages=iter([*turns, AIMessage(content="done")]))


@pytest.fixture
def tools(entered):
    return [tool(function) for function in file_functions(entered)]


def tool_messages(result) -> list[ToolMessage]:
    return [m for m in result["messages"] if isinstance(m, ToolMessage)]


def test_denied_prod_delete_never_runs_and_the_model_reads_the_reason(tools, entered):
    guard = governed("intern-bot")
    agent = create_agent(
        script(("file_delete", {"path": "/prod/db.sqlite"})), tools=tools, middleware=[WardenMiddleware(guard)]
    )

    result = agent.invoke({"messages": [{"role": "user", "content": "clean up prod"}]})

    assert entered == []
    (message,) = tool_messages(result)
    assert message.status == "error"
    assert message.content == (
        "missing-scope: Tool file_delete requires scope write:files, which agent intern-bot does not hold; "
        "no-prod-deletes: Production file deletion requires human approval"
    )
    assert result["messages"][-1].content == "done"  # the model got the reason back and carried on
    assert kinds(signed_log(guard)) == [
        ("intent", "file_delete", {"path": "/prod/db.sqlite"}),
        ("decision", "deny", ["missing-scope", "no-prod-deletes"]),
        ("result", "file_delete"),
    ]
    assert signed_log(guard)[2]["payload"]["summary"].startswith("not run (deny): missing-scope")


def test_held_prod_delete_reads_waiting_for_human_approval(tools, entered):
    guard = governed("support-bot")
    agent = create_agent(
        script(("file_delete", {"path": "/prod/db.sqlite"})), tools=tools, middleware=[WardenMiddleware(guard)]
    )

    result = agent.invoke({"messages": [{"role": "user", "content": "clean up prod"}]})

    assert entered == []
    (message,) = tool_messages(result)
    assert (
        message.content
        == "waiting for human approval: no-prod-deletes: Production file deletion requires human approval"
    )
    assert [k[:2] for k in kinds(signed_log(guard))] == [
        ("intent", "file_delete"),
        ("decision", "require_approval"),
        ("result", "file_delete"),
    ]


def test_allowed_call_runs_and_its_result_is_signed(tools, entered):
    guard = governed("support-bot")
    agent = create_agent(
        script(("file_read", {"path": "/srv/notes.txt"})), tools=tools, middleware=[WardenMiddleware(guard)]
    )

    result = agent.invoke({"messages": [{"role": "user", "content": "read my notes"}]})

    assert entered == [("file_read", "/srv/notes.txt")]
    (message,) = tool_messages(result)
    assert message.content == "contents of /srv/notes.txt"
    records = signed_log(guard)
    assert kinds(records) == [
        ("intent", "file_read", {"path": "/srv/notes.txt"}),
        ("decision", "allow", []),
        ("result", "file_read"),
    ]
    assert records[2]["payload"]["summary"] == summarize_result("contents of /srv/notes.txt")


def test_async_agent_is_governed_too(tools, entered):
    import asyncio

    guard = governed("intern-bot")
    agent = create_agent(
        script(("file_read", {"path": "/srv/a"}), ("file_delete", {"path": "/prod/a"})),
        tools=tools,
        middleware=[WardenMiddleware(guard)],
    )
    result = asyncio.run(agent.ainvoke({"messages": [{"role": "user", "content": "go"}]}))
    assert entered == [("file_read", "/srv/a")]
    assert [m.status for m in tool_messages(result)] == ["success", "error"]


def test_govern_tool_wraps_a_plain_tool(tools, entered):
    file_delete, file_read = tools
    guard = governed("support-bot")
    delete, read = govern_tool(file_delete, guard), govern_tool(file_read, guard)

    assert delete.name == "file_delete" and delete.args == file_delete.args
    assert delete.invoke({"path": "/prod/x"}).startswith("waiting for human approval: no-prod-deletes")
    assert read.invoke({"path": "/srv/x"}) == "contents of /srv/x"
    assert entered == [("file_read", "/srv/x")]

    strict = govern_tool(file_delete, guard, raise_on_refusal=True)
    with pytest.raises(ApprovalRequired) as held:
        strict.invoke({"path": "/prod/x"})
    assert held.value.approval_request()["args"] == {"path": "/prod/x"}
    with pytest.raises(PolicyViolationError, match="missing-scope"):
        govern_tool(file_delete, governed("intern-bot"), raise_on_refusal=True).invoke({"path": "/srv/x"})
    assert entered == [("file_read", "/srv/x")]


def test_the_documented_example_runs(monkeypatch, capsys):
    from agents_sdk.integrations.tests.policy import run_doc_example

    run_doc_example("langchain", monkeypatch, capsys)
