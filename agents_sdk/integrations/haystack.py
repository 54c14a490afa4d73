"""Warden for Haystack 3.x Agents (``pip install ./agents_sdk[haystack]``).

    from haystack.components.agents import Agent
    from agents_sdk.integrations.haystack import warden_hooks

    agent = Agent(chat_generator=generator, tools=[file_delete, file_read], hooks=warden_hooks(guard))

``warden_hooks`` returns the Agent's ``hooks`` mapping: a ``before_tool``
``ConfirmationHook`` whose strategy (``WardenConfirmationStrategy``, usable on its own
under any tool name or ``"*"``) asks the policy instead of a person, and an
``after_tool`` hook (``WardenResultHook``) that signs the results of the calls that ran.
A denied or held call is rejected through Haystack's human-in-the-loop machinery: the
tool never runs and the model receives the policy's reason as the tool result
(``"waiting for human approval: …"`` when held).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from haystack.hooks.human_in_the_loop import ConfirmationHook, ToolExecutionDecision

from agents_sdk.guard import Guard
from agents_sdk.integrations import GovernedCall, Summarizer, govern

__all__ = ["WardenConfirmationStrategy", "WardenResultHook", "warden_hooks"]


def _call_key(tool_name: str, tool_call_id: str | None, arguments: Any) -> str:
    # Scripted or local models may leave tool-call ids out: fall back to name and arguments.
    if tool_call_id:
        return tool_call_id
    return f"{tool_name}:{json.dumps(arguments, sort_keys=True, default=str)}"


class WardenConfirmationStrategy:
    """A Haystack ``ConfirmationStrategy`` that lets the policy confirm or reject each call."""

    def __init__(self, guard: Guard, *, summarize: Summarizer | None = None, **context: Any) -> None:
        self.guard = guard
        self.summarize = summarize
        self.context = context
        self._pending: dict[str, GovernedCall] = {}
        self._lock = threading.Lock()

    def run(
        self,
        *,
        tool_name: str,
        tool_description: str,
        tool_params: dict[str, Any],
        tool_call_id: str | None = None,
        confirmation_strategy_context: dict[str, Any] | None = None,
    ) -> ToolExecutionDecision:
        governed = govern(self.guard, tool_name, tool_params, **self.context)
        if not governed.allowed:
            governed.record_refusal()
            return ToolExecutionDecision(
                tool_name=tool_name, execute=False, tool_call_id=tool_call_id, feedback=governed.message
            )
        with self._lock:
            self._pending[_call_key(tool_name, tool_call_id, tool_params)] = governed
        return ToolExecutionDecision(
            tool_name=tool_name, execute=True, tool_call_id=tool_call_id, final_tool_params=tool_params
        )

    async def run_async(self, **kwargs: Any) -> ToolExecutionDecision:
        return self.run(**kwargs)

    def take(self, tool_name: str, tool_call_id: str | None, arguments: Any) -> GovernedCall | None:
        """The allowed call a tool result belongs to (once)."""
        with self._lock:
            return self._pending.pop(_call_key(tool_name, tool_call_id, arguments), None)

    def to_dict(self) -> dict[str, Any]:
        # A Guard holds keys and live connections: an agent with Warden hooks is built in code.
        raise TypeError("WardenConfirmationStrategy holds a live Guard and cannot be serialized")


class WardenResultHook:
    """An ``after_tool`` hook: signs the result of each call the strategy allowed."""

    allowed_hook_points = ("after_tool",)

    def __init__(self, strategy: WardenConfirmationStrategy) -> None:
        self.strategy = strategy

    def run(self, state: Any) -> None:
        for message in reversed(state.data.get("messages") or []):
            results = message.tool_call_results
            if not results:
                break  # past this step's tool results
            for result in results:
                origin = result.origin
                governed = self.strategy.take(origin.tool_name, origin.id, origin.arguments)
                if governed is None:
                    continue  # rejected (already signed as not run) or signed before
                if result.error:
                    governed.record_error(RuntimeError(str(result.result)))
                else:
                    governed.record_result(result.result, summarize=self.strategy.summarize)

    async def run_async(self, state: Any) -> None:
        self.run(state)

    def to_dict(self) -> dict[str, Any]:
        raise TypeError("WardenResultHook holds a live Guard and cannot be serialized")


def warden_hooks(guard: Guard, *, summarize: Summarizer | None = None, **context: Any) -> dict[str, list[Any]]:
    """The ``hooks=`` mapping for a Haystack ``Agent`` that puts ``guard`` in front of every tool."""
    strategy = WardenConfirmationStrategy(guard, summarize=summarize, **context)
    return {
        "before_tool": [ConfirmationHook(confirmation_strategies={"*": strategy})],
        "after_tool": [WardenResultHook(strategy)],
    }
