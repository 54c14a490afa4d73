"""``warden gateway``'s configuration and the agents it decides for.

Config (YAML or JSON; relative paths are relative to the file)::

    listen: 127.0.0.1:9191              # one gRPC port: ExtMcp and envoy Authorization
    identities: [support-bot.key]       # the agents whose calls pass through, by key file
    identity_passphrase_env: WARDEN_IDENTITY_PASSPHRASE   # optional
    environment: prod
    log: var/gateway.jsonl              # signed records, appended as JSON Lines
    approvals:                          # optional: file held calls for people to approve
      url: http://127.0.0.1:8000        #   the control plane (agents_sdk.approvals.ApprovalClient)
      spool_dir: var/approvals          #   requests wait here until the control plane takes them
    decision:
      opa_url: http://127.0.0.1:8181    # `warden sidecar` (or OPA) ...
      # policy_dir: rego/warden         # ... or embedded: Rego modules and data
      # data: data.json
    ext_mcp:
      agent_key: agent                  # metadata_context key that names the agent
    ext_authz:
      agent_header: x-warden-agent      # request header that names the agent
      tool: http_request                # the registry tool HTTP requests are decided as
      max_body_bytes: 65536

A gateway signs each agent's records with that agent's own key, as ``warden mcp-proxy``
does: it can only pass calls of agents whose keys it holds (any other is refused).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents_sdk.errors import WardenError
from agents_sdk.guard import DecisionBackend, EmbeddedBackend, Guard, OPAHTTPBackend
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner

__all__ = ["Gateway", "GatewayConfig", "GatewayConfigError", "load_config", "parse_config"]


class GatewayConfigError(WardenError):
    """The gateway's configuration is missing a field or has a wrong one; the message names it."""


@dataclass
class GatewayConfig:
    identities: list[Path]
    decision: dict[str, Any]
    listen: str = "127.0.0.1:9191"
    identity_passphrase_env: str | None = None
    environment: str | None = None
    log: Path | None = None
    agent_key: str = "agent"
    approvals_url: str | None = None
    approvals_spool_dir: Path | None = None
    agent_header: str = "x-warden-agent"
    http_tool: str = "http_request"
    max_body_bytes: int = 64 * 1024
    base_dir: Path = field(default_factory=lambda: Path("."))

    def backend(self) -> DecisionBackend:
        """The decision backend the config names. Raises GatewayConfigError."""
        decision = self.decision
        if decision.get("opa_url"):
            return OPAHTTPBackend(str(decision["opa_url"]), timeout=float(decision.get("timeout", 1.0)))
        if decision.get("policy_dir"):
            from agents_sdk.engine import RegoEngineError, load_modules

            policy_dir = self.base_dir / str(decision["policy_dir"])
            try:
                modules = {p: s for p, s in load_modules(str(policy_dir)).items() if not p.endswith("_test.rego")}
                data = json.loads((self.base_dir / str(decision["data"])).read_text("utf-8")) if decision.get("data") else {}
                return EmbeddedBackend.from_modules(modules, data)
            except (OSError, ValueError) as exc:
                raise GatewayConfigError(f"decision: cannot read the policy or its data: {exc}") from exc
            except (WardenError, RegoEngineError) as exc:
                raise GatewayConfigError(f"decision.policy_dir: the modules do not compile: {exc}") from exc
        raise GatewayConfigError("decision: give opa_url (warden sidecar or OPA) or policy_dir (and data)")


def parse_config(raw: Any, base_dir: Path = Path(".")) -> GatewayConfig:
    """A GatewayConfig from a parsed document. Raises GatewayConfigError naming the field."""
    if not isinstance(raw, Mapping):
        raise GatewayConfigError("the config must be a mapping")
    identities = raw.get("identities") or ([raw["identity"]] if raw.get("identity") else [])
    if not isinstance(identities, list) or not identities or not all(isinstance(p, str) for p in identities):
        raise GatewayConfigError("identities: a list of agent key files (AgentIdentity.save) is required")
    decision = raw.get("decision")
    if not isinstance(decision, Mapping):
        raise GatewayConfigError("decision: required (opa_url, or policy_dir and data)")
    listen = str(raw.get("listen", "127.0.0.1:9191"))
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise GatewayConfigError(f"listen: {listen!r:.80} must be HOST:PORT")
    approvals = raw.get("approvals")
    if approvals is not None and (not isinstance(approvals, Mapping) or not isinstance(approvals.get("url"), str)
                                  or not str(approvals.get("url")).startswith(("http://", "https://"))
                                  or not approvals.get("spool_dir")):
        raise GatewayConfigError("approvals: give url (the control plane, http:// or https://) and spool_dir")
    ext_mcp = raw.get("ext_mcp") or {}
    ext_authz = raw.get("ext_authz") or {}
    if not isinstance(ext_mcp, Mapping) or not isinstance(ext_authz, Mapping):
        raise GatewayConfigError("ext_mcp, ext_authz: must be mappings")
    max_body = ext_authz.get("max_body_bytes", 64 * 1024)
    if not isinstance(max_body, int) or isinstance(max_body, bool) or max_body < 0:
        raise GatewayConfigError("ext_authz.max_body_bytes: a whole number of bytes")
    log = raw.get("log")
    return GatewayConfig(
        identities=[base_dir / p for p in identities],
        decision=dict(decision),
        listen=listen,
        identity_passphrase_env=raw.get("identity_passphrase_env"),
        environment=raw.get("environment"),
        log=base_dir / str(log) if log else None,
        agent_key=str(ext_mcp.get("agent_key", "agent")),
        approvals_url=approvals["url"] if approvals else None,
        approvals_spool_dir=base_dir / str(approvals["spool_dir"]) if approvals else None,
        agent_header=str(ext_authz.get("agent_header", "x-warden-agent")).lower(),
        http_tool=str(ext_authz.get("tool", "http_request")),
        max_body_bytes=max_body,
        base_dir=base_dir,
    )


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read a gateway config file (YAML or JSON). Raises GatewayConfigError naming the field."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise GatewayConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    import yaml

    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise GatewayConfigError(f"{path}: not valid YAML/JSON: {exc}") from exc
    return parse_config(raw, path.resolve().parent)


class Gateway:
    """One Guard (signer, backend) per agent whose key the gateway holds."""

    def __init__(self, identities: list[AgentIdentity], backend: DecisionBackend, *, environment: str | None = None,
                 sink: Callable[[dict[str, Any]], None] | None = None,
                 approvals: Callable[[AgentIdentity], Any] | None = None) -> None:
        # A held call is filed for approval (when configured) and refused with its request id:
        # a gateway cannot hold the client's connection open while a person decides.
        self.guards = {
            identity.name: Guard(identity, backend, environment=environment,
                                 signer=ActionSigner(identity, sink=sink, keep_log=sink is None),
                                 approvals=approvals(identity) if approvals is not None else None)
            for identity in identities
        }

    def guard_for(self, agent: object) -> Guard | None:
        """The Guard of ``agent`` (an agent id), or of the only agent when none is named."""
        if agent is None or agent == "":
            return next(iter(self.guards.values())) if len(self.guards) == 1 else None
        return self.guards.get(agent) if isinstance(agent, str) else None

    def close(self) -> None:
        for guard in self.guards.values():
            guard.close()

    @classmethod
    def from_config(cls, config: GatewayConfig, sink: Callable[[dict[str, Any]], None] | None = None) -> Gateway:
        passphrase = os.environ.get(config.identity_passphrase_env) if config.identity_passphrase_env else None
        try:
            identities = [AgentIdentity.load(path, passphrase=passphrase) for path in config.identities]
        except (OSError, WardenError) as exc:
            raise GatewayConfigError(f"identities: cannot load an agent key: {exc}") from exc
        approvals = None
        if config.approvals_url and config.approvals_spool_dir:
            from agents_sdk.approvals import ApprovalClient

            url, spool = config.approvals_url, config.approvals_spool_dir

            def approvals(identity: AgentIdentity) -> Any:
                return ApprovalClient(identity, url, spool_dir=spool / identity.name)

        return cls(identities, config.backend(), environment=config.environment, sink=sink, approvals=approvals)
