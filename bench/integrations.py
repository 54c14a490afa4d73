"""Overhead each framework integration adds per tool call, over calling the tool directly.

    python bench/integrations.py [langchain|openai_agents|haystack|mcp ...]

Run it where the framework is installed (each nox integration session runs its own line).
Each governed call goes through the integration's own hook with the shipped policy pack
in the embedded engine and an ActionSigner (intent, decision, result: three Ed25519
signatures), which is most of the cost. Prints figures, never asserts a time.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents_sdk.integrations.tests.policy import governed

CALLS = 2000
ARGS = {"path": "/srv/notes.txt"}


def file_read(path: str) -> str:
    return f"contents of {path}"


def per_call_us(call, n: int = CALLS) -> float:
    for _ in range(50):
        call()
    started = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - started) / n * 1e6


def bench_langchain(guard):
    from langchain_core.messages import ToolMessage

    from agents_sdk.integrations.langchain import WardenMiddleware

    middleware = WardenMiddleware(guard)
    request = SimpleNamespace(tool_call={"name": "file_read", "args": ARGS, "id": "call-1"})

    def handler(req):
        return ToolMessage(content=file_read(**req.tool_call["args"]), tool_call_id=req.tool_call["id"])

    return lambda: handler(request), lambda: middleware.wrap_tool_call(request, handler)


def bench_openai_agents(guard):
    import json

    from agents_sdk.integrations.openai_agents import warden_guardrails

    inputs, outputs = warden_guardrails(guard)
    context = SimpleNamespace(tool_name="file_read", tool_arguments=json.dumps(ARGS), tool_call_id="call-1")

    def governed_call():
        inputs.guardrail_function(SimpleNamespace(context=context, agent=None))
        result = file_read(**json.loads(context.tool_arguments))
        outputs.guardrail_function(SimpleNamespace(context=context, agent=None, output=result))

    return lambda: file_read(**json.loads(context.tool_arguments)), governed_call


def bench_haystack(guard):
    from haystack.dataclasses import ChatMessage, ToolCall

    from agents_sdk.integrations.haystack import WardenConfirmationStrategy, WardenResultHook

    strategy = WardenConfirmationStrategy(guard)
    hook = WardenResultHook(strategy)
    call = ToolCall(tool_name="file_read", arguments=ARGS, id="call-1")

    def governed_call():
        strategy.run(tool_name="file_read", tool_description="", tool_params=ARGS, tool_call_id="call-1")
        message = ChatMessage.from_tool(file_read(**ARGS), origin=call)
        hook.run(SimpleNamespace(data={"messages": [message]}))

    return lambda: ChatMessage.from_tool(file_read(**ARGS), origin=call), governed_call


def bench_mcp(guard):
    from mcp import types

    from agents_sdk.integrations.mcp_proxy import MCPProxy

    class Upstream:
        async def call_tool(self, name, arguments):
            return types.CallToolResult(content=[types.TextContent(type="text", text=file_read(**arguments))])

    upstream = Upstream()
    proxy = MCPProxy(guard, upstream, server_name="files")
    params = types.CallToolRequestParams(name="file_read", arguments=ARGS)
    loop = asyncio.new_event_loop()
    return (
        lambda: loop.run_until_complete(upstream.call_tool("file_read", ARGS)),
        lambda: loop.run_until_complete(proxy.call_tool(None, params)),
    )


BENCHES = {
    "langchain": ("langchain", bench_langchain),
    "openai_agents": ("agents", bench_openai_agents),
    "haystack": ("haystack", bench_haystack),
    "mcp": ("mcp", bench_mcp),
}


def main(names: list[str]) -> None:
    print(f"{'integration':<15} {'direct µs':>10} {'governed µs':>12} {'overhead µs/call':>17}")
    for name in names or list(BENCHES):
        module, build = BENCHES[name]
        if importlib.util.find_spec(module) is None:
            print(f"{name:<15} {'(framework not installed here)':>41}")
            continue
        guard = governed("support-bot")
        guard.signer._keep_log = False  # a long run would otherwise keep every record in memory
        direct, governed_call = build(guard)
        direct_us, governed_us = per_call_us(direct), per_call_us(governed_call)
        print(f"{name:<15} {direct_us:>10.1f} {governed_us:>12.1f} {governed_us - direct_us:>17.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
