"""agentgateway's ExtMCP processor: Warden decides each MCP ``tools/call`` with its arguments.

agentgateway calls ``CheckRequest`` before it forwards a JSON-RPC request upstream and
``CheckResponse`` with the upstream's result (protocol: ``protos/ext_mcp.proto``, vendored
from agentgateway). For ``tools/call`` the processor:

- names the agent from ``metadata_context[agent_key]`` (a CEL expression in the gateway's
  config, e.g. the JWT's ``sub``) and decides with that agent's Guard: the input contract,
  the engine (or ``warden sidecar``), the signed ``intent`` and ``decision`` records, exactly
  as ``warden mcp-proxy`` (``agents_sdk.integrations.govern``);
- answers ``pass`` on allow, ``mutated`` params with the policy's ``mask`` obligations applied
  to the arguments (the upstream never sees the masked values), or an ``AuthorizationError``
  carrying the policy's reason (``PERMISSION_DENIED``; ``INVALID`` for a malformed call), and
  signs a ``result`` record saying the call did not run;
- on ``CheckResponse`` signs the ``result`` record (block count, error flag, SHA-256 of the
  content; never the content) for the call it answers.

Pairing a response with its call: ``metadata_context.call_id`` when the gateway sends one
(exact); otherwise first-in, first-out per agent and session. An upstream JSON-RPC error never
reaches ``CheckResponse``: a call left without a response for ``pending_seconds`` gets a
``result`` record saying so. Other methods (``tools/list``, ``resources/*``, …) pass.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import deque
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from agents_sdk.errors import CanonicalJSONError, WardenError
from agents_sdk.gateways.config import Gateway
from agents_sdk.gateways.protos import ext_mcp_pb2 as pb
from agents_sdk.gateways.protos import ext_mcp_pb2_grpc as pb_grpc
from agents_sdk.guard import Guard
from agents_sdk.guard.inputs import printable
from agents_sdk.integrations import GovernedCall, govern
from agents_sdk.pointers import masked
from agents_sdk.records import canonical_json

logger = logging.getLogger(__name__)

__all__ = ["REDACTED", "ExtMcpProcessor", "from_struct", "summarize_mcp_result", "to_struct"]

REDACTED = "**REDACTED**"
_CONTEXT_KEYS = ("session_id", "on_behalf_of", "approval_token", "environment")
_MAX_PENDING = 10_000


def _integral(value: Any) -> Any:
    # google.protobuf.Struct carries every number as a double: 5 arrives as 5.0. Whole numbers
    # go back to int so the policy, the approval binding and the signed records see 5.
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def from_struct(message: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as JSON (whole numbers as int)."""
    value = _integral(json_format.MessageToDict(message))
    return value if isinstance(value, dict) else {}


def to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def summarize_mcp_result(result: dict[str, Any]) -> str:
    """The signed summary of an MCP tool result: error flag, block count and SHA-256 of the content."""
    raw_content = result.get("content")
    content: list[Any] = raw_content if isinstance(raw_content, list) else []
    document = {"content": content, "isError": bool(result.get("isError"))}
    try:
        raw = canonical_json(document)
    except CanonicalJSONError:
        raw = json.dumps(document, sort_keys=True, default=str).encode("utf-8", "backslashreplace")
    digest = hashlib.sha256(raw).hexdigest()
    return f"returned {len(content)} content block(s), isError={str(bool(result.get('isError'))).lower()}, sha256:{digest}"


def _passed() -> pb.McpRequestResult:
    return pb.McpRequestResult(**{"pass": pb.Pass()})


def _refused(code: int, reason: str) -> pb.McpRequestResult:
    return pb.McpRequestResult(error=pb.AuthorizationError(code=code, reason=reason))  # type: ignore[arg-type]


def _argument_pointers(mask: object) -> list[str]:
    """The mask pointers into ``/action/args``, re-rooted at the JSON-RPC params' ``arguments``."""
    if not isinstance(mask, list):
        return []
    return ["/arguments" + p[len("/action/args"):] for p in mask
            if isinstance(p, str) and p.startswith("/action/args/")]


class ExtMcpProcessor(pb_grpc.ExtMcpServicer):
    """The ExtMcp gRPC service over a ``Gateway`` (one Guard per agent key it holds)."""

    def __init__(self, gateway: Gateway, *, agent_key: str = "agent", pending_seconds: float = 300.0) -> None:
        self.gateway = gateway
        self.agent_key = agent_key
        self.pending_seconds = pending_seconds
        self._pending: dict[tuple[str, str, str], deque[tuple[float, GovernedCall]]] = {}
        self._lock = threading.Lock()

    # -- the two RPCs ---------------------------------------------------------------------

    def CheckRequest(self, request: pb.McpRequest, context: grpc.ServicerContext) -> pb.McpRequestResult:  # noqa: N802
        try:
            return self._check_request(request)
        except Exception as exc:  # noqa: BLE001 - every call gets an answer; a crash would hang the gateway's client
            logger.exception("ExtMcp CheckRequest %s failed", printable(request.method))
            return _refused(pb.AuthorizationError.UNKNOWN,
                            f"warden: the processor failed to decide this call ({type(exc).__name__}); it did not run")

    def CheckResponse(self, request: pb.McpResponse, context: grpc.ServicerContext) -> pb.McpResponseResult:  # noqa: N802
        try:
            self._check_response(request)
        except Exception:  # noqa: BLE001 - the result already exists; losing its record must not lose the answer
            logger.exception("ExtMcp CheckResponse %s failed", printable(request.method))
        return pb.McpResponseResult(**{"pass": pb.Pass()})

    # -- deciding -------------------------------------------------------------------------

    def _guard(self, metadata: dict[str, Any]) -> Guard | None:
        return self.gateway.guard_for(metadata.get(self.agent_key))

    def _check_request(self, request: pb.McpRequest) -> pb.McpRequestResult:
        if request.method != "tools/call":
            return _passed()
        metadata = from_struct(request.metadata_context)
        params = from_struct(request.mcp_request)
        name, arguments = params.get("name"), params.get("arguments", {})
        if not isinstance(name, str) or not name:
            return _refused(pb.AuthorizationError.INVALID, "warden: tools/call without a tool name")
        if not isinstance(arguments, dict):
            return _refused(pb.AuthorizationError.INVALID, "warden: tools/call arguments must be an object")
        guard = self._guard(metadata)
        if guard is None:
            agent = metadata.get(self.agent_key)
            return _refused(pb.AuthorizationError.PERMISSION_DENIED,
                            f"warden: no key for agent {printable(agent) if agent else '(none named)'}; "
                            "the gateway refuses calls it cannot sign")
        context = {key: metadata[key] for key in _CONTEXT_KEYS if metadata.get(key) is not None}
        try:
            governed = govern(guard, name, arguments, server=request.service_name or None, **context)
        except WardenError as exc:  # arguments that cannot be signed: refuse rather than run unrecorded
            return _refused(pb.AuthorizationError.INVALID, f"warden: {exc}")
        if not governed.allowed:
            governed.record_refusal()
            return _refused(pb.AuthorizationError.PERMISSION_DENIED, governed.message or "refused by policy")
        self._remember(guard, governed, metadata)
        pointers = _argument_pointers(governed.decision.obligations.get("mask"))
        if pointers:
            return pb.McpRequestResult(mutated=to_struct(masked(params, pointers, REDACTED)))
        return _passed()

    def _check_response(self, request: pb.McpResponse) -> None:
        if request.method != "tools/call":
            return
        metadata = from_struct(request.metadata_context)
        guard = self._guard(metadata)
        if guard is None:
            return
        governed = self._take(guard, metadata)
        if governed is None:
            logger.warning("ExtMcp: a tools/call result from %s matched no call this processor passed",
                           printable(request.service_name))
            return
        governed.record_result(from_struct(request.mcp_response), summarize=summarize_mcp_result)

    # -- pairing calls with their results ---------------------------------------------------

    def _key(self, guard: Guard, metadata: dict[str, Any]) -> tuple[str, str, str]:
        session = guard.session_of({"context": {"session_id": metadata.get("session_id")}})
        call_id = metadata.get("call_id")
        return guard.identity.name, session, str(call_id) if call_id is not None else ""

    def _remember(self, guard: Guard, governed: GovernedCall, metadata: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            if sum(len(q) for q in self._pending.values()) < _MAX_PENDING:
                self._pending.setdefault(self._key(guard, metadata), deque()).append((now, governed))

    def _take(self, guard: Guard, metadata: dict[str, Any]) -> GovernedCall | None:
        with self._lock:
            key = self._key(guard, metadata)
            queue = self._pending.get(key)
            if not queue:
                return None
            _, governed = queue.popleft()
            if not queue:
                del self._pending[key]
            return governed

    def _expire(self, now: float) -> None:
        for key in list(self._pending):
            queue = self._pending[key]
            while queue and now - queue[0][0] > self.pending_seconds:
                _, governed = queue.popleft()
                governed._sign("no result: the gateway reported none (an upstream error, or a lost response)")
            if not queue:
                del self._pending[key]
