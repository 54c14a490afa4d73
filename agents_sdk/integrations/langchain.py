"""Warden for LangChain 1.x agents (``pip install ./agents_sdk[langchain]``).

    from langchain.agents import create_agent
    from agents_sdk.integrations.langchain import WardenMiddleware

    agent = create_agent(model, tools=[file_delete, file_read], middleware=[WardenMiddleware(guard)])

``WardenMiddleware`` decides every tool call in ``create_agent``'s ``wrap_tool_call``
hook: a denied or held call never reaches the tool, and the model receives the policy's
reason as the ``ToolMessage`` (status ``error``) so it can recover. ``govern_tool``
wraps a plain LangChain tool the same way, for code that invokes tools itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, StructuredTool

from agents_sdk.guard import Guard
from agents_sdk.integrations import GovernedCall, Summarizer, govern

__all__ = ["WardenMiddleware", "govern_tool"]


def _result_text(result: Any) -> Any:
    return result.content if isinstance(result, ToolMessage) else result


class WardenMiddleware(AgentMiddleware):
    """Agent middleware that puts a ``Guard`` in front of every tool call.

    ``context`` is added to each decision's input (``server=``, ``approval_token=``, …);
    ``summarize`` overrides the signed summary of a tool's result.
    """

    def __init__(self, guard: Guard, *, summarize: Summarizer | None = None, **context: Any) -> None:
        super().__init__()
        self.guard = guard
        self.summarize = summarize
        self.context = context

    def _decide(self, request: Any) -> tuple[GovernedCall, ToolMessage | None]:
        call = request.tool_call
        governed = govern(self.guard, call["name"], call.get("args") or {}, **self.context)
        if governed.allowed:
            return governed, None
        governed.record_refusal()
        refusal = ToolMessage(content=governed.message, tool_call_id=call["id"], name=call["name"], status="error")
        return governed, refusal

    def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        governed, refusal = self._decide(request)
        if refusal is not None:
            return refusal
        try:
            result = handler(request)
        except Exception as exc:
            governed.record_error(exc)
            raise
        governed.record_result(_result_text(result), summarize=self.summarize)
        return result

    async def awrap_tool_call(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        governed, refusal = self._decide(request)
        if refusal is not None:
            return refusal
        try:
            result = await handler(request)
        except Exception as exc:
            governed.record_error(exc)
            raise
        governed.record_result(_result_text(result), summarize=self.summarize)
        return result


def govern_tool(
    tool: BaseTool, guard: Guard, *, raise_on_refusal: bool = False, summarize: Summarizer | None = None, **context: Any
) -> StructuredTool:
    """A copy of ``tool`` (same name, description and argument schema) that asks ``guard`` first.

    A refused call returns the policy's reason (``"waiting for human approval: …"`` when
    held) as the tool's output, or with ``raise_on_refusal=True`` raises
    PolicyViolationError / ApprovalRequired; in both cases ``tool`` does not run.
    """

    def run(**kwargs: Any) -> Any:
        governed = govern(guard, tool.name, kwargs, **context)
        if not governed.allowed:
            governed.record_refusal()
            if raise_on_refusal:
                governed.raise_for_decision()
            return governed.message
        try:
            result = tool.invoke(kwargs)
        except Exception as exc:
            governed.record_error(exc)
            raise
        governed.record_result(result, summarize=summarize)
        return result

    async def arun(**kwargs: Any) -> Any:
        governed = govern(guard, tool.name, kwargs, **context)
        if not governed.allowed:
            governed.record_refusal()
            if raise_on_refusal:
                governed.raise_for_decision()
            return governed.message
        try:
            result = await tool.ainvoke(kwargs)
        except Exception as exc:
            governed.record_error(exc)
            raise
        governed.record_result(result, summarize=summarize)
        return result

    return StructuredTool.from_function(
        func=run,
        coroutine=arun,
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        return_direct=tool.return_direct,
    )
