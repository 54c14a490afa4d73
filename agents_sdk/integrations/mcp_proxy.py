"""``warden mcp-proxy``: a governing gateway between any MCP client and any MCP server.

    $ warden mcp-proxy --config mcp-proxy.yaml            # serves stdio (default)
    $ warden mcp-proxy --config mcp-proxy.yaml --transport http --addr 127.0.0.1:8765

The proxy connects to one upstream MCP server (a command over stdio, or a streamable
HTTP URL) with the official ``mcp`` SDK, and serves its tools to the client over stdio or
streamable HTTP. Each ``tools/call`` is decided by policy first (``action.tool``,
``action.args``, and the upstream's name as ``action.server``); the call and its result
are signed with the agent's key. A denied or held call is answered with the policy's
reason as an error result (``isError: true``) and never reaches the upstream. With
``hide_denied_tools``, ``tools/list`` leaves out tools the policy denies outright.

Config (YAML or JSON; relative paths are relative to the file)::

    identity: agent.key                 # AgentIdentity.save's key file
    identity_passphrase_env: WARDEN_IDENTITY_PASSPHRASE   # optional
    environment: prod
    session_id: files-gateway           # optional; a new UUID per run by default
    log: var/mcp-proxy.jsonl            # signed records, appended as JSON Lines
    ship:                               # optional: deliver the records to the control plane
      url: http://127.0.0.1:8000        #   POST /api/v1/audit/batches/, signed with the agent's key
      spool_dir: var/mcp-proxy-spool    #   records wait here (on disk) until acknowledged
    approvals:                          # optional: file held calls for a person (docs/approvals.md)
      # url: http://127.0.0.1:8000      #   the control plane; default ship.url
      spool_dir: var/mcp-proxy-approvals  # requests wait here while the control plane is unreachable
      on_approval: wait                 #   raise (default): a tool error naming the request; wait: hold the call
      timeout: 300                      #   seconds a call waits for the decision (wait)
      # ledger_dir: var/used-grants     #   share between proxies on a host: a grant is used once among them
      # public_key: bundle-signing.pem  #   verify grants offline (with keyid)
      # keyid: warden-bundles-1
    hide_denied_tools: true
    upstream:
      name: files                       # → input.action.server
      command: npx                      # stdio upstream ...
      args: ["-y", "@modelcontextprotocol/server-filesystem", "/srv/files"]
      # url: http://127.0.0.1:9000/mcp  # ... or streamable HTTP
    decision:
      opa_url: http://127.0.0.1:8181    # OPA or `warden sidecar` ...
      # policy_dir: rego/warden         # ... or embedded: Rego modules
      # data: data.json                 #     and their data (the registry)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
import uuid
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters, types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from agents_sdk.approvals import ApprovalClient
from agents_sdk.bundles import VerificationConfig, VerificationKey
from agents_sdk.errors import CanonicalJSONError, WardenError
from agents_sdk.guard import Decision, DecisionBackend, EmbeddedBackend, Guard, OPAHTTPBackend
from agents_sdk.guard.inputs import printable
from agents_sdk.identity import AgentIdentity
from agents_sdk.integrations import govern
from agents_sdk.records import ActionSigner, JSONLSink, canonical_json

logger = logging.getLogger(__name__)

__all__ = ["ApprovalSettings", "MCPProxy", "ProxyConfig", "ProxyConfigError", "guard_of", "load_config", "run"]


class ProxyConfigError(WardenError):
    """The proxy's configuration is missing a field or has a wrong one; the message names it."""


@dataclass
class Upstream:
    name: str
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    cwd: str | None = None
    url: str | None = None

    def target(self) -> StdioServerParameters | str:
        if self.url:
            return self.url
        env = {**os.environ, **self.env} if self.env else None
        return StdioServerParameters(command=self.command, args=self.args, env=env, cwd=self.cwd)


@dataclass
class ApprovalSettings:
    """The ``approvals`` section: where held calls are filed and how the proxy answers them."""

    url: str
    spool_dir: Path
    on_approval: str = "raise"
    timeout: float = 300.0
    ledger_dir: Path | None = None
    public_key: Path | None = None
    keyid: str | None = None

    def client(self, identity: AgentIdentity) -> ApprovalClient:
        verification = None
        if self.public_key is not None and self.keyid:
            try:
                pem = self.public_key.read_text("utf-8")
            except OSError as exc:
                raise ProxyConfigError(f"approvals.public_key: cannot read {self.public_key}: {exc}") from exc
            verification = VerificationConfig(keys={self.keyid: VerificationKey.from_pem(self.keyid, pem)},
                                              keyid=self.keyid)
        return ApprovalClient(identity, self.url, spool_dir=self.spool_dir, ledger_dir=self.ledger_dir,
                              verification=verification)


@dataclass
class ProxyConfig:
    identity: Path
    upstream: Upstream
    decision: dict[str, Any]
    identity_passphrase_env: str | None = None
    environment: str | None = None
    session_id: str | None = None
    log: Path | None = None
    hide_denied_tools: bool = False
    base_dir: Path = Path(".")
    ship_url: str | None = None
    ship_spool_dir: Path | None = None
    approvals: ApprovalSettings | None = None

    def backend(self) -> DecisionBackend:
        """The decision backend the config names. Raises ProxyConfigError."""
        decision = self.decision
        if decision.get("opa_url"):
            return OPAHTTPBackend(str(decision["opa_url"]), timeout=float(decision.get("timeout", 1.0)))
        if decision.get("policy_dir"):
            from agents_sdk.engine import RegoEngineError, load_modules

            policy_dir = self.base_dir / decision["policy_dir"]
            try:
                modules = {p: s for p, s in load_modules(str(policy_dir)).items() if not p.endswith("_test.rego")}
            except OSError as exc:
                raise ProxyConfigError(f"decision.policy_dir: cannot read {policy_dir}: {exc}") from exc
            data: dict[str, Any] = {}
            if decision.get("data"):
                try:
                    data = json.loads((self.base_dir / decision["data"]).read_text("utf-8"))
                except (OSError, ValueError) as exc:
                    raise ProxyConfigError(f"decision.data: cannot read {decision['data']} as JSON: {exc}") from exc
            try:
                return EmbeddedBackend.from_modules(modules, data)
            except (WardenError, RegoEngineError) as exc:
                raise ProxyConfigError(f"decision.policy_dir: the modules do not compile: {exc}") from exc
        raise ProxyConfigError(
            "decision: give opa_url (OPA or warden sidecar) or policy_dir (and data) for the embedded engine"
        )

    def load_identity(self) -> AgentIdentity:
        passphrase = os.environ.get(self.identity_passphrase_env) if self.identity_passphrase_env else None
        return AgentIdentity.load(self.identity, passphrase=passphrase)


def _read_config_file(path: Path) -> Any:
    """The file's content (a mapping when the file is a valid config; checked by the caller)."""
    text = path.read_text("utf-8")
    if path.suffix.lower() == ".json":
        return json.loads(text)
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is part of the mcp extra
        return json.loads(text)
    return yaml.safe_load(text)


def _approval_settings(raw: Any, base: Path, ship_url: str | None) -> ApprovalSettings | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ProxyConfigError("approvals: must be a mapping (url, spool_dir, on_approval, timeout)")
    url = raw.get("url") or ship_url
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ProxyConfigError("approvals.url: the control plane's http(s) URL (or give ship.url)")
    if not raw.get("spool_dir"):
        raise ProxyConfigError("approvals.spool_dir: required (held calls' requests wait there while unreachable)")
    on_approval = raw.get("on_approval", "raise")
    if on_approval not in ("raise", "wait"):
        raise ProxyConfigError(
            f"approvals.on_approval: {on_approval!r:.40} must be 'raise' (a tool error naming the request) "
            "or 'wait' (hold the call until a person decides)"
        )
    timeout = raw.get("timeout", 300)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 86400:
        raise ProxyConfigError("approvals.timeout: seconds a held call waits for its decision, above 0, at most 86400")
    if bool(raw.get("public_key")) != bool(raw.get("keyid")):
        raise ProxyConfigError("approvals.public_key: give it with keyid (the bundle signing key that signs grants)")
    return ApprovalSettings(
        url=url, spool_dir=base / str(raw["spool_dir"]), on_approval=on_approval, timeout=float(timeout),
        ledger_dir=base / str(raw["ledger_dir"]) if raw.get("ledger_dir") else None,
        public_key=base / str(raw["public_key"]) if raw.get("public_key") else None,
        keyid=str(raw["keyid"]) if raw.get("keyid") else None,
    )


def load_config(path: str | os.PathLike[str]) -> ProxyConfig:
    """Read a proxy config file (YAML or JSON). Raises ProxyConfigError naming the field."""
    path = Path(path)
    try:
        raw = _read_config_file(path)
    except OSError as exc:
        raise ProxyConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ProxyConfigError(f"{path}: not valid YAML/JSON: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise ProxyConfigError(f"{path}: the config must be a mapping")
    base = path.resolve().parent
    if not raw.get("identity"):
        raise ProxyConfigError("identity: the agent's key file is required")
    up = raw.get("upstream")
    if not isinstance(up, Mapping) or not up.get("name"):
        raise ProxyConfigError("upstream.name: required (the server's name, sent to the policy as action.server)")
    if bool(up.get("command")) == bool(up.get("url")):
        raise ProxyConfigError("upstream: give exactly one of command (stdio) or url (streamable HTTP)")
    args = up.get("args") or []
    if not isinstance(args, list):
        raise ProxyConfigError("upstream.args: must be a list of strings")
    decision = raw.get("decision")
    if not isinstance(decision, Mapping):
        raise ProxyConfigError("decision: required (opa_url, or policy_dir and data)")
    log = raw.get("log")
    ship = raw.get("ship")
    if ship is not None:
        if not isinstance(ship, Mapping) or not isinstance(ship.get("url"), str) or not ship.get("spool_dir"):
            raise ProxyConfigError("ship: give url (the control plane) and spool_dir (where records wait on disk)")
        if not ship["url"].startswith(("http://", "https://")):
            raise ProxyConfigError(f"ship.url: {ship['url']!r:.80} must start with http:// or https://")
    return ProxyConfig(
        identity=base / str(raw["identity"]),
        upstream=Upstream(
            name=str(up["name"]),
            command=up.get("command"),
            args=[str(a) for a in args],
            env={str(k): str(v) for k, v in (up.get("env") or {}).items()} or None,
            cwd=str(base / up["cwd"]) if up.get("cwd") else None,
            url=up.get("url"),
        ),
        decision=dict(decision),
        identity_passphrase_env=raw.get("identity_passphrase_env"),
        environment=raw.get("environment"),
        session_id=raw.get("session_id"),
        log=base / str(log) if log else None,
        hide_denied_tools=bool(raw.get("hide_denied_tools", False)),
        base_dir=base,
        ship_url=ship["url"] if ship else None,
        ship_spool_dir=base / str(ship["spool_dir"]) if ship else None,
        approvals=_approval_settings(raw.get("approvals"), base, ship["url"] if ship else None),
    )


def summarize_tool_result(result: types.CallToolResult) -> str:
    """A signed summary of an MCP tool result: error flag, block count and SHA-256 of the content."""
    content = [block.model_dump(mode="json", exclude_none=True) for block in result.content]
    document = {"content": content, "isError": bool(result.is_error)}
    try:
        raw = canonical_json(document)
    except CanonicalJSONError:  # e.g. invalid Unicode from the upstream: still hashed, never a crash
        raw = json.dumps(document, sort_keys=True, default=str).encode("utf-8")
    digest = hashlib.sha256(raw).hexdigest()
    return f"returned {len(content)} content block(s), isError={str(bool(result.is_error)).lower()}, sha256:{digest}"


def _error_result(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


class MCPProxy:
    """The gateway's logic over a connected upstream ``mcp.Client``; ``server()`` is the MCP
    server the downstream client talks to."""

    def __init__(self, guard: Guard, upstream: Client, *, server_name: str, hide_denied_tools: bool = False) -> None:
        self.guard = guard
        self.upstream = upstream
        self.server_name = server_name
        self.hide_denied_tools = hide_denied_tools

    def never_allowed(self, tool: str) -> bool:
        """True when the policy denies ``tool`` whatever its arguments (probed with none; not signed)."""
        input = self.guard.build_input(tool, {}, server=self.server_name)
        if self.guard.input_problem(input) is not None:
            return True  # a tool name the engine cannot take is never callable through the proxy
        raw, decision_id = self.guard.backend.decide(input, timeout=self.guard.timeout)
        decision = Decision.from_result(raw, decision_id)
        # A deny only because the probe has no arguments (a file tool must name its file)
        # says nothing about calls with arguments: such a tool stays listed.
        return decision.effect == "deny" and not any(r.rule == "malformed-args" for r in decision.reasons)

    async def list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        listed = await self.upstream.list_tools()
        tools = list(listed.tools)
        if self.hide_denied_tools:
            tools = [tool for tool in tools if not self.never_allowed(tool.name)]
        return types.ListToolsResult(tools=tools)

    async def call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            return await self._call_tool(params)
        except Exception as exc:  # noqa: BLE001 - every call gets an answer; an exception here left the client hanging
            logger.exception("tools/call %s failed", printable(params.name))
            return _error_result(f"warden: the gateway failed to handle this call ({type(exc).__name__}); it did not run")

    async def _call_tool(self, params: types.CallToolRequestParams) -> types.CallToolResult:
        arguments = dict(params.arguments or {})
        try:
            if getattr(self.guard, "approvals", None) is not None and self.guard.on_approval == "wait":
                # Waiting for a person is a blocking long poll: off the event loop, so other calls go on.
                governed = await asyncio.to_thread(govern, self.guard, params.name, arguments, server=self.server_name)
            else:
                governed = govern(self.guard, params.name, arguments, server=self.server_name)
        except WardenError as exc:  # arguments that cannot be signed: refuse rather than run unrecorded
            return _error_result(f"warden: {exc}")
        if not governed.allowed:
            governed.record_refusal()
            return _error_result(governed.message or "refused by policy")
        try:
            result = await self.upstream.call_tool(params.name, arguments)
        except Exception as exc:  # noqa: BLE001 - any upstream failure is reported to the client, and signed
            governed.record_error(exc)
            return _error_result(printable(f"upstream {self.server_name} failed: {exc}", 1000))
        governed.record_result(result, summarize=summarize_tool_result)
        return result

    def server(self) -> Server:
        return Server(
            f"warden-{self.server_name}",
            version="1",
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )


def guard_of(config: ProxyConfig, identity: AgentIdentity, signer: ActionSigner | None) -> Guard:
    """The Guard the proxy decides with: the config's backend and, with ``approvals``, an
    ApprovalClient that files held calls (and waits for them with ``on_approval: wait``)."""
    approvals = config.approvals
    return Guard(
        identity,
        config.backend(),
        environment=config.environment,
        session_id=config.session_id or str(uuid.uuid4()),
        signer=signer,
        approvals=approvals.client(identity) if approvals is not None else None,
        on_approval=approvals.on_approval if approvals is not None else "raise",
        approval_timeout=approvals.timeout if approvals is not None else 300.0,
    )


async def serve(
    config: ProxyConfig, *, transport: str = "stdio", host: str = "127.0.0.1", port: int = 8765, path: str = "/mcp"
) -> None:
    """Connect to the upstream and serve until stopped (stdin closes, or SIGINT/SIGTERM for HTTP)."""
    identity = config.load_identity()
    sink = JSONLSink(config.log) if config.log else None
    shipper = None
    if config.ship_url and config.ship_spool_dir:
        from agents_sdk.shipper import Shipper

        shipper = Shipper(identity, config.ship_url, spool_dir=config.ship_spool_dir).start()
    sinks = [s for s in (sink, shipper.submit if shipper is not None else None) if s is not None]

    def deliver(record: dict[str, Any]) -> None:
        for each in sinks:
            each(record)

    signer = ActionSigner(identity, sink=deliver if sinks else None, keep_log=False)
    guard = guard_of(config, identity, signer)
    try:
        async with AsyncExitStack() as stack:
            upstream = await stack.enter_async_context(Client(config.upstream.target()))
            proxy = MCPProxy(
                guard, upstream, server_name=config.upstream.name, hide_denied_tools=config.hide_denied_tools
            )
            server = proxy.server()
            if transport == "stdio":
                async with stdio_server() as (read_stream, write_stream):
                    await server.run(read_stream, write_stream, server.create_initialization_options())
            else:
                import uvicorn

                app = server.streamable_http_app(streamable_http_path=path, host=host)
                await uvicorn.Server(
                    uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
                ).serve()
    finally:
        guard.close()
        if sink is not None:
            sink.close()
        if shipper is not None:
            shipper.close(timeout=10)  # flush: what could not be sent stays spooled for the next run


def run(config_path: str, *, transport: str = "stdio", addr: str = "127.0.0.1:8765", path: str = "/mcp") -> int:
    """Entry point of ``warden mcp-proxy``. Raises ProxyConfigError for a bad config."""
    config = load_config(config_path)
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ProxyConfigError(f"--addr {addr!r}: expected HOST:PORT")
    try:
        asyncio.run(serve(config, transport=transport, host=host, port=int(port), path=path))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(sys.argv[1]))
