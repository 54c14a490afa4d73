"""AuthZEN Authorization API 1.0 on ``warden sidecar``: the PDP socket gateways already speak.

    POST /access/v1/evaluation              one decision
    POST /access/v1/evaluations             a batch (execute_all, deny_on_first_deny,
                                            permit_on_first_permit)
    GET  /.well-known/authzen-configuration the PDP's metadata (search: not supported)

Each evaluation is mapped to Warden's decision input (DESIGN.md) and decided by the
sidecar's own ``/v1/data/warden/decision`` path, so the input contract, the engine, the
stale-bundle rule and the decision log are the ones every other caller gets:

- ``subject`` of type ``agent`` → ``input.agent`` (owner and scopes from the bundle's
  registry; ``subject.properties.scopes`` may only narrow them, as in the pack);
- COAZ-MCP's default (a user as subject, the agent in ``context.agent``) → the agent is
  ``input.agent`` and the user ``input.context.user``: Warden decides what the *agent* may
  do, and the user is a fact its policies may read;
- ``action.name`` → ``input.action.tool`` unless ``resource.type`` is ``tool``/``mcp_tool``
  (then ``resource.id`` is the tool and ``action.name`` the verb); the arguments come from
  ``properties.arguments`` (action's, else the tool resource's) or the properties
  themselves; an MCP server is ``resource.properties.server`` or a resource of type
  ``mcp_server``; any other resource is ``input.action.resource``;
- ``context`` → ``input.context`` (``on_behalf_of``, ``approval_token``, ``session_id``,
  ``environment``, ``time`` and whatever else the organisation's policies read).

The answer is ``decision`` (true only for ``allow``) and a ``context`` with the decision id,
the effect, ``reasons`` (rule, message, controls), ``obligations`` as a list of
``{"id", "properties"}`` objects (the AuthZEN Obligations draft's shape) and, for
``require_approval``, an ``access_request`` (the Access Request and Approval draft's shape)
that says exactly what a person must approve and how the PEP retries with the grant.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Protocol

from agents_sdk.errors import CanonicalJSONError, WardenError
from agents_sdk.guard import DECISION_QUERY
from agents_sdk.records import canonical_json

__all__ = [
    "EVALUATION_PATH",
    "EVALUATIONS_PATH",
    "MAX_EVALUATIONS",
    "SEMANTICS",
    "WELL_KNOWN_PATH",
    "AuthZENRequestError",
    "configuration",
    "handle",
    "to_authzen_response",
    "to_warden_input",
]

EVALUATION_PATH = "/access/v1/evaluation"
EVALUATIONS_PATH = "/access/v1/evaluations"
WELL_KNOWN_PATH = "/.well-known/authzen-configuration"
SEMANTICS = ("execute_all", "deny_on_first_deny", "permit_on_first_permit")
MAX_EVALUATIONS = 1000
"""Evaluations one batch may carry; a larger batch is a 400, not a slow sidecar."""

_TOOL_RESOURCES = ("tool", "mcp_tool")
_SERVER_RESOURCES = ("mcp_server", "server")
_AGENT_KEYS = ("agent", "agent_id", "client_id")  # where a COAZ-style request names the agent
_DECISION_PATH = "/" + DECISION_QUERY.removeprefix("data.").replace(".", "/")


class AuthZENRequestError(WardenError, ValueError):
    """The request is not an AuthZEN evaluation Warden can map; the message names the field."""


class DecidingSidecar(Protocol):
    """What this module needs of ``Sidecar``: its one decision path and its registry."""

    backend: Any

    @property
    def url(self) -> str: ...

    def _data(self, method: str, path: str, params: dict[str, list[str]], body: bytes,
              requested_by: str) -> tuple[int, Any]: ...


# -- request mapping ------------------------------------------------------------------------


def _entity(request: Mapping[str, Any], name: str, required: tuple[str, ...]) -> dict[str, Any]:
    value = request.get(name)
    if not isinstance(value, Mapping):
        raise AuthZENRequestError(f"{name}: required, an object with {' and '.join(required)}")
    for key in required:
        if not isinstance(value.get(key), str) or not value.get(key):
            raise AuthZENRequestError(f"{name}.{key}: required, a non-empty string")
    properties = value.get("properties", {})
    if not isinstance(properties, Mapping):
        raise AuthZENRequestError(f"{name}.properties: must be an object")
    return dict(value)


def _arguments(properties: Mapping[str, Any], *drop: str) -> dict[str, Any]:
    if "arguments" in properties:
        arguments = properties["arguments"]
        if not isinstance(arguments, Mapping):
            raise AuthZENRequestError("properties.arguments: tool arguments must be an object")
        return dict(arguments)
    return {k: v for k, v in properties.items() if k not in drop}


def _agent_from_context(context: dict[str, Any]) -> str | None:
    for key in _AGENT_KEYS:
        value = context.pop(key, None)
        if isinstance(value, Mapping):
            value = value.get("id")
        if isinstance(value, str) and value:
            return value
    return None


def to_warden_input(request: Mapping[str, Any], agents: Mapping[str, Any]) -> dict[str, Any]:
    """The Warden decision input for one AuthZEN evaluation request (module docstring).

    ``agents`` is the bundle registry's ``agents`` map. Raises AuthZENRequestError naming
    the field when the request lacks subject, action or resource, or has the wrong types.
    """
    subject = _entity(request, "subject", ("type", "id"))
    action = _entity(request, "action", ("name",))
    resource = _entity(request, "resource", ("type", "id"))
    raw_context = request.get("context", {})
    if raw_context is None:
        raw_context = {}
    if not isinstance(raw_context, Mapping):
        raise AuthZENRequestError("context: must be an object")
    context = dict(raw_context)
    subject_properties = subject.get("properties") or {}

    if subject["type"] == "agent":
        agent_id = subject["id"]
    else:
        # COAZ-MCP: the user is the subject and the agent travels in the context. Warden
        # decides the agent's action; the user it acts for becomes a fact in the context.
        agent_id = _agent_from_context(context) or subject["id"]
        context["user"] = {"type": subject["type"], "id": subject["id"], **dict(subject_properties)}
        subject_properties = {}
    agent: dict[str, Any] = {"id": agent_id, "name": agent_id}
    registered = agents.get(agent_id) if isinstance(agents, Mapping) else None
    if isinstance(registered, Mapping):
        if isinstance(registered.get("owner"), str):
            agent["owner"] = registered["owner"]
        if isinstance(registered.get("scopes"), list):
            agent["scopes"] = list(registered["scopes"])
    if "scopes" in subject_properties:
        agent["scopes"] = subject_properties["scopes"]  # narrows only: the pack intersects with the registry
    if subject["type"] != "agent":
        agent["type"] = subject["type"] if agent_id == subject["id"] else "agent"

    action_properties = action.get("properties") or {}
    resource_properties = dict(resource.get("properties") or {})
    warden_action: dict[str, Any] = {"type": "tool_call"}
    if resource["type"] in _TOOL_RESOURCES:
        warden_action["tool"] = resource["id"]
        warden_action["verb"] = action["name"]
        if "arguments" in action_properties:
            warden_action["args"] = _arguments(action_properties)
        else:
            warden_action["args"] = _arguments(resource_properties, "server", "mcp_server")
        server = resource_properties.get("server") or resource_properties.get("mcp_server")
    else:
        warden_action["tool"] = action["name"]
        warden_action["args"] = _arguments(action_properties)
        server = resource["id"] if resource["type"] in _SERVER_RESOURCES else resource_properties.get("server")
        if resource["type"] not in _SERVER_RESOURCES:
            # Pre-1.0 PEPs (the interop todo suite among them) put attributes next to type/id.
            warden_action["resource"] = {**{k: v for k, v in resource.items() if k != "properties"},
                                         **resource_properties}
    server = server or context.pop("mcp_server", None)
    if server is not None:
        warden_action["server"] = server
    on_behalf_of = context.get("on_behalf_of")
    if isinstance(on_behalf_of, str):
        context["on_behalf_of"] = [on_behalf_of]
    return {"agent": agent, "action": warden_action, "context": context}


# -- response mapping -----------------------------------------------------------------------


def _obligations(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = result.get("obligations")
    raw = raw if isinstance(raw, Mapping) else {}
    obligations: list[dict[str, Any]] = []
    if raw.get("log"):
        obligations.append({"id": "warden.log", "properties": {"signed": True}})
    mask = [p for p in raw.get("mask") or [] if isinstance(p, str)]
    if mask:
        # The PEP must not pass these input values on, nor log them (JSON Pointers into the input).
        obligations.append({"id": "warden.mask", "properties": {"pointers": mask, "replacement": "**REDACTED**"}})
    for key, value in raw.items():
        if key not in ("log", "mask"):
            obligations.append({"id": f"warden.{key}", "properties": {"value": value}})
    return obligations


def _access_request(input: Mapping[str, Any], reasons: list[Any], decision_id: str) -> dict[str, Any]:
    action = input.get("action") or {}
    args = action.get("args") or {}
    try:  # the hash an approval grant binds (agents_sdk.approvals.grants.args_sha256)
        digest = hashlib.sha256(canonical_json(dict(args))).hexdigest()
    except (CanonicalJSONError, TypeError, ValueError):
        digest = None
    return {
        "id": decision_id,
        "status": "pending",
        "subject": {"type": "agent", "id": (input.get("agent") or {}).get("id")},
        "action": {"name": action.get("tool"), "properties": {"arguments": args, "server": action.get("server")}},
        "reasons": reasons,
        # A grant binds one agent, one tool and these exact arguments (rego/warden/approvals.rego).
        "binding": {"agent_id": (input.get("agent") or {}).get("id"), "tool": action.get("tool"),
                    "arguments_sha256": digest},
        "approval": {
            # The sidecar holds no agent key: the agent (or its gateway) files the request, signed,
            # as agents_sdk.approvals.ApprovalClient does; people decide it in the console.
            "file_with": "POST /api/v1/approvals/requests/ on the control plane, signed by the agent",
            "retry_with": "context.approval_token",
        },
    }


def to_authzen_response(answer: Mapping[str, Any], input: Mapping[str, Any]) -> dict[str, Any]:
    """The AuthZEN evaluation response for the sidecar's answer ``{"decision_id", "result"}``."""
    result = answer.get("result")
    result = result if isinstance(result, Mapping) else {}
    effect = result.get("effect") if result.get("effect") in ("allow", "deny", "require_approval") else "deny"
    allowed = effect == "allow" and result.get("allow") is True
    reasons = [r for r in result.get("reasons") or [] if isinstance(r, Mapping)]
    if effect == "allow" and not allowed:
        effect = "deny"  # an answer that contradicts itself is a deny (fail closed)
    context: dict[str, Any] = {"id": answer.get("decision_id"), "effect": effect,
                               "reasons": reasons, "obligations": _obligations(result)}
    if reasons:
        context["reason"] = "; ".join(f"{r.get('rule')}: {r.get('message')}" for r in reasons)
    if effect == "require_approval":
        context["access_request"] = _access_request(input, reasons, str(answer.get("decision_id")))
    return {"decision": allowed, "context": context}


def _error(status: int, message: str) -> dict[str, Any]:
    return {"decision": False, "context": {"error": {"status": status, "message": message}}}


# -- serving --------------------------------------------------------------------------------


class _Registry:
    """The bundle registry's agents, read once per bundle revision (not once per decision)."""

    def __init__(self) -> None:
        self.revision: object = object()
        self.agents: Mapping[str, Any] = {}

    def agents_of(self, sidecar: DecidingSidecar) -> Mapping[str, Any]:
        revision = sidecar.backend.revision
        if revision != self.revision:
            try:
                agents = sidecar.backend.evaluate("data.warden_registry.agents")
            except Exception:  # noqa: BLE001 - no bundle yet, or no registry: decided as unknown agents
                agents = None
            self.agents = agents if isinstance(agents, Mapping) else {}
            self.revision = revision
        return self.agents


def _evaluate(sidecar: DecidingSidecar, request: Any, requested_by: str) -> dict[str, Any]:
    if not isinstance(request, Mapping):
        raise AuthZENRequestError("each evaluation must be an object")
    registry = getattr(sidecar, "_authzen_registry", None)
    if registry is None:
        registry = _Registry()
        sidecar._authzen_registry = registry  # type: ignore[attr-defined]
    agents = registry.agents_of(sidecar)
    input = to_warden_input(request, agents)
    # ASCII escapes: a lone surrogate stays text, for the input check to refuse by name.
    body = json.dumps({"input": input}).encode("ascii")
    status, answer = sidecar._data("POST", _DECISION_PATH, {}, body, requested_by)
    if status != 200 or not isinstance(answer, Mapping):
        return _error(500, str(answer.get("message") if isinstance(answer, Mapping) else answer))
    return to_authzen_response(answer, input)


def _batch(sidecar: DecidingSidecar, document: Mapping[str, Any], requested_by: str) -> tuple[int, Any]:
    items = document.get("evaluations")
    if items is None or items == []:
        return 200, _evaluate(sidecar, document, requested_by)  # the spec's backwards-compatible form
    if not isinstance(items, list):
        raise AuthZENRequestError("evaluations: must be an array of evaluation objects")
    if len(items) > MAX_EVALUATIONS:
        return 400, {"code": "invalid_parameter",
                     "message": f"evaluations: at most {MAX_EVALUATIONS} per request, got {len(items)}"}
    options = document.get("options") or {}
    if not isinstance(options, Mapping):
        raise AuthZENRequestError("options: must be an object")
    semantic = options.get("evaluations_semantic", "execute_all")
    if semantic not in SEMANTICS:
        raise AuthZENRequestError(f"options.evaluations_semantic: one of {', '.join(SEMANTICS)}")
    defaults = {key: document[key] for key in ("subject", "action", "resource", "context") if key in document}
    results: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            results.append(_error(400, f"evaluations[{index}]: must be an object"))
        else:
            try:
                results.append(_evaluate(sidecar, {**defaults, **item}, requested_by))
            except AuthZENRequestError as exc:
                results.append(_error(400, f"evaluations[{index}].{exc}"))
        decided = results[-1]["decision"]
        if (semantic == "deny_on_first_deny" and not decided) or (semantic == "permit_on_first_permit" and decided):
            break
    return 200, {"evaluations": results}


def configuration(base_url: str) -> dict[str, Any]:
    """The PDP metadata document; search and partial evaluation are not supported, so their
    endpoints are absent (which the spec says is how a PEP learns that)."""
    return {
        "policy_decision_point": base_url,
        "issuer": base_url,
        "access_evaluation_endpoint": base_url + EVALUATION_PATH,
        "access_evaluations_endpoint": base_url + EVALUATIONS_PATH,
        "capabilities": ["evaluations_semantic:" + s for s in SEMANTICS],
        "search_supported": False,
    }


def handle(sidecar: DecidingSidecar, method: str, path: str, body: bytes, requested_by: str) -> tuple[int, Any] | None:
    """Answer an AuthZEN request as ``(status, body)``, or None when ``path`` is not AuthZEN's."""
    path = path.rstrip("/") or "/"
    if path == WELL_KNOWN_PATH:
        if method != "GET":
            return 405, {"code": "method_not_allowed", "message": "use GET"}
        return 200, configuration(sidecar.url)
    if path not in (EVALUATION_PATH, EVALUATIONS_PATH):
        if path.startswith("/access/v1/"):
            return 404, {"code": "resource_not_found",
                         "message": f"{path}: not supported (warden sidecar serves evaluation and evaluations)"}
        return None
    if method != "POST":
        return 405, {"code": "method_not_allowed", "message": "use POST"}
    try:
        document = json.loads(body or b"null")
    except (ValueError, RecursionError) as exc:
        return 400, {"code": "invalid_parameter", "message": f"body is not JSON: {str(exc)[:200]}"}
    if not isinstance(document, Mapping):
        return 400, {"code": "invalid_parameter", "message": "body must be an AuthZEN request object"}
    try:
        if path == EVALUATION_PATH:
            return 200, _evaluate(sidecar, document, requested_by)
        return _batch(sidecar, document, requested_by)
    except AuthZENRequestError as exc:
        return 400, {"code": "invalid_parameter", "message": str(exc)}
