"""Warden for the OpenAI Agents SDK (``pip install ./agents_sdk[openai-agents]``).

    from agents import Agent, function_tool
    from agents_sdk.integrations.openai_agents import govern_function_tool, warden_guardrails

    inputs, outputs = warden_guardrails(guard)

    @function_tool(tool_input_guardrails=[inputs], tool_output_guardrails=[outputs])
    def file_delete(path: str) -> str: ...

    agent = Agent(name="ops", tools=[file_delete, govern_function_tool(someone_elses_tool, guard)])

The input guardrail decides each call before the tool runs: a deny or a hold answers
``reject_content`` with the policy's reason (``"waiting for human approval: …"`` when
held), so the tool never runs and the model reads why. The output guardrail signs the
result of every call that ran. ``govern_function_tool`` adds both to a FunctionTool you
did not write (MCP tools, a library's tools), leaving its other guardrails in place.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from agents import FunctionTool
from agents.tool_guardrails import (
    ToolGuardrailFunctionOutput,
    ToolInputGuardrail,
    ToolInputGuardrailData,
    ToolOutputGuardrail,
    ToolOutputGuardrailData,
)

from agents_sdk.guard import Guard
from agents_sdk.integrations import GovernedCall, Summarizer, govern

__all__ = ["govern_function_tool", "warden_guardrails"]


def _arguments(raw: str) -> dict[str, Any]:
    try:
        parsed = json.loads(raw or "{}")
    except ValueError:
        return {"_unparsed_arguments": raw}
    return parsed if isinstance(parsed, dict) else {"_arguments": parsed}


def warden_guardrails(
    guard: Guard, *, summarize: Summarizer | None = None, **context: Any
) -> tuple[ToolInputGuardrail[Any], ToolOutputGuardrail[Any]]:
    """The pair of tool guardrails that governs a FunctionTool: (input, output).

    ``context`` is added to each decision's input; ``summarize`` overrides the signed
    summary of a result.
    """
    # The decision made in the input guardrail, per tool call, for the output guardrail
    # to sign its result in the same session.
    pending: dict[str, GovernedCall] = {}

    def warden_policy(data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        tool_context = data.context
        governed = govern(guard, tool_context.tool_name, _arguments(tool_context.tool_arguments), **context)
        if not governed.allowed:
            governed.record_refusal()
            return ToolGuardrailFunctionOutput.reject_content(governed.message, output_info=governed.decision.as_dict())
        pending[tool_context.tool_call_id] = governed
        return ToolGuardrailFunctionOutput.allow(output_info=governed.decision.as_dict())

    def warden_result(data: ToolOutputGuardrailData) -> ToolGuardrailFunctionOutput:
        governed = pending.pop(data.context.tool_call_id, None)
        if governed is not None:
            governed.record_result(data.output, summarize=summarize)
        return ToolGuardrailFunctionOutput.allow()

    return (
        ToolInputGuardrail(guardrail_function=warden_policy, name="warden_policy"),
        ToolOutputGuardrail(guardrail_function=warden_result, name="warden_result"),
    )


def govern_function_tool(
    tool: FunctionTool, guard: Guard, *, summarize: Summarizer | None = None, **context: Any
) -> FunctionTool:
    """A copy of ``tool`` with Warden's guardrails first among its tool guardrails."""
    inputs, outputs = warden_guardrails(guard, summarize=summarize, **context)
    return dataclasses.replace(
        tool,
        tool_input_guardrails=[inputs, *(tool.tool_input_guardrails or [])],
        tool_output_guardrails=[*(tool.tool_output_guardrails or []), outputs],
    )
