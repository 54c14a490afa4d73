"""Envoy's external authorization (``envoy.service.auth.v3.Authorization``, gRPC) for agents'
HTTP requests through Envoy, Istio or any Envoy-based gateway.

Each ``Check`` is one governed tool call of the registry tool ``http_request`` (configurable)
with the request as its arguments::

    {"method": "POST", "url": "https://api.example.com/v1/refunds?x=1", "host": "api.example.com",
     "path": "/v1/refunds?x=1", "content_type": "application/json",
     "body": "<buffered body, UTF-8>", "json": {…when the body is a JSON object…}}

so the pack's egress rules judge ``url`` and the organisation's rules the method, path and
body. The agent is named by a request header (``x-warden-agent`` by default; set it from a
JWT claim with Envoy's jwt_authn ``claim_to_headers``); ``x-warden-session``,
``x-warden-on-behalf-of`` and ``x-warden-approval-token`` go to ``input.context``.

An allowed request continues upstream with ``x-warden-decision-id`` added; any other answer
is a ``403`` (``400`` for a request the input contract refuses) whose headers carry
``x-warden-effect``, ``x-warden-rule`` and ``x-warden-reason``, and whose body is the
decision as JSON. Intent and decision are signed with the agent's key; Envoy never shows the
authorizer the upstream's response, so only a refused request gets a ``result`` record.
Header values and the body go to the policy only up to ``max_body_bytes`` (a larger body,
or one Envoy marked partial, is decided with ``body_truncated: true``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from agents_sdk.errors import WardenError
from agents_sdk.gateways.config import Gateway
from agents_sdk.guard.inputs import printable
from agents_sdk.integrations import govern

logger = logging.getLogger(__name__)

__all__ = ["EnvoyAuthorization", "http_action"]

_SESSION, _ON_BEHALF_OF, _APPROVAL = "x-warden-session", "x-warden-on-behalf-of", "x-warden-approval-token"
_MAX_HEADER = 512


def _header_value(text: str) -> str:
    # Header values: visible ASCII and spaces only (no CR/LF to split a response), kept short.
    cleaned = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return cleaned[:_MAX_HEADER]


def _header(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=_header_value(value)),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )


def http_action(http: attribute_context_pb2.AttributeContext.HttpRequest, *, max_body_bytes: int) -> dict[str, Any]:
    """The ``http_request`` arguments for an Envoy ``HttpRequest`` attribute."""
    headers = {k.lower(): v for k, v in http.headers.items()}
    scheme = http.scheme or "http"
    host = http.host or headers.get(":authority", "")
    path = http.path or "/"
    args: dict[str, Any] = {"method": http.method.upper(), "url": f"{scheme}://{host}{path}", "host": host, "path": path}
    raw = http.raw_body or http.body.encode("utf-8", "surrogatepass")
    # Envoy marks a body cut at its buffer limit; size is -1 when unknown.
    truncated = headers.get("x-envoy-auth-partial-body") == "true" or http.size > len(raw)
    if len(raw) > max_body_bytes:
        raw, truncated = raw[:max_body_bytes], True
    content_type = headers.get("content-type")
    if content_type:
        args["content_type"] = content_type
    if raw:
        text = raw.decode("utf-8", "replace")
        args["body"] = text
        if not truncated and content_type and content_type.split(";")[0].strip() == "application/json":
            try:
                parsed = json.loads(text)
            except (ValueError, RecursionError):
                parsed = None
            if isinstance(parsed, dict):
                args["json"] = parsed
    if truncated:
        args["body_truncated"] = True
    return args


def _denied(http_code: int, headers: list[base_pb2.HeaderValueOption], body: dict[str, Any],
            rpc_code: int = code_pb2.PERMISSION_DENIED) -> external_auth_pb2.CheckResponse:
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=rpc_code, message=_header_value(str(body.get("reason", "")))),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=http_code),
            headers=[*headers, _header("content-type", "application/json")],
            body=json.dumps(body, ensure_ascii=True),
        ),
    )


class EnvoyAuthorization(external_auth_pb2_grpc.AuthorizationServicer):
    """The ``Authorization`` gRPC service over a ``Gateway`` (one Guard per agent key it holds)."""

    def __init__(self, gateway: Gateway, *, agent_header: str = "x-warden-agent", tool: str = "http_request",
                 max_body_bytes: int = 64 * 1024) -> None:
        self.gateway = gateway
        self.agent_header = agent_header.lower()
        self.tool = tool
        self.max_body_bytes = max_body_bytes

    def Check(self, request: external_auth_pb2.CheckRequest, context: grpc.ServicerContext) -> external_auth_pb2.CheckResponse:  # noqa: N802
        try:
            return self._check(request)
        except Exception as exc:  # noqa: BLE001 - Envoy must get an answer; a deny is the safe one
            logger.exception("ext_authz Check failed")
            reason = f"warden: the authorizer failed ({type(exc).__name__}); the request was not let through"
            return _denied(403, [_header("x-warden-effect", "deny"), _header("x-warden-rule", "engine-error"),
                                 _header("x-warden-reason", reason)], {"effect": "deny", "reason": reason},
                           code_pb2.UNAVAILABLE)

    def _check(self, request: external_auth_pb2.CheckRequest) -> external_auth_pb2.CheckResponse:
        http = request.attributes.request.http
        headers = {k.lower(): v for k, v in http.headers.items()}
        agent = headers.get(self.agent_header)
        guard = self.gateway.guard_for(agent)
        if guard is None:
            reason = f"no key for agent {printable(agent) if agent else '(none named)'}; the gateway refuses requests it cannot sign"
            return _denied(403, [_header("x-warden-effect", "deny"), _header("x-warden-rule", "unknown-agent"),
                                 _header("x-warden-reason", reason)], {"effect": "deny", "reason": reason})
        context: dict[str, Any] = {}
        if headers.get(_SESSION):
            context["session_id"] = headers[_SESSION]
        if headers.get(_APPROVAL):
            context["approval_token"] = headers[_APPROVAL]
        if headers.get(_ON_BEHALF_OF):
            context["on_behalf_of"] = [a.strip() for a in headers[_ON_BEHALF_OF].split(",") if a.strip()]
        args = http_action(http, max_body_bytes=self.max_body_bytes)
        try:
            governed = govern(guard, self.tool, args, **context)
        except WardenError as exc:
            reason = f"warden: {exc}"
            return _denied(400, [_header("x-warden-effect", "deny"), _header("x-warden-rule", "malformed-input"),
                                 _header("x-warden-reason", reason)], {"effect": "deny", "reason": reason},
                           code_pb2.INVALID_ARGUMENT)
        decision = governed.decision
        decision_id = decision.decision_id or ""
        if governed.allowed:
            ok_headers = [_header("x-warden-decision-id", decision_id)] if decision_id else []
            return external_auth_pb2.CheckResponse(
                status=status_pb2.Status(code=code_pb2.OK),
                ok_response=external_auth_pb2.OkHttpResponse(headers=ok_headers),
            )
        governed.record_refusal()
        reason = governed.message or "refused by policy"
        malformed = decision.rule == "malformed-input"
        headers_out = [_header("x-warden-effect", decision.effect), _header("x-warden-rule", decision.rule or "default-deny"),
                       _header("x-warden-reason", reason)]
        if decision_id:
            headers_out.append(_header("x-warden-decision-id", decision_id))
        body = {"effect": decision.effect, "reason": reason, "reasons": [r.as_dict() for r in decision.reasons],
                "decision_id": decision_id or None}
        return _denied(400 if malformed else 403, headers_out, body,
                       code_pb2.INVALID_ARGUMENT if malformed else code_pb2.PERMISSION_DENIED)
