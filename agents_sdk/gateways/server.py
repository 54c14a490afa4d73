"""``warden gateway``: one gRPC server with agentgateway's ExtMcp and Envoy's Authorization."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc

from agents_sdk.gateways.config import Gateway, GatewayConfig, load_config
from agents_sdk.gateways.ext_authz import EnvoyAuthorization
from agents_sdk.gateways.ext_mcp import ExtMcpProcessor
from agents_sdk.gateways.protos import ext_mcp_pb2_grpc
from agents_sdk.records import JSONLSink

logger = logging.getLogger(__name__)

__all__ = ["GatewayServer", "run"]


class GatewayServer:
    """Both services on ``config.listen`` (port 0 picks a free one: read ``port`` after start)."""

    def __init__(self, config: GatewayConfig, *, gateway: Gateway | None = None, max_workers: int = 8) -> None:
        self.config = config
        self._sink = JSONLSink(config.log) if config.log else None
        sinks: list[Callable[[dict[str, Any]], None]] = [self._sink] if self._sink else []
        def deliver(record: dict[str, Any]) -> None:
            for sink in sinks:
                sink(record)

        self.gateway = gateway or Gateway.from_config(config, sink=deliver if sinks else None)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="warden-gw"))
        ext_mcp_pb2_grpc.add_ExtMcpServicer_to_server(  # type: ignore[no-untyped-call]  # generated code
            ExtMcpProcessor(self.gateway, agent_key=config.agent_key), self.server)
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(
            EnvoyAuthorization(self.gateway, agent_header=config.agent_header, tool=config.http_tool,
                               max_body_bytes=config.max_body_bytes), self.server)
        self.port = self.server.add_insecure_port(config.listen)
        if self.port == 0:
            raise OSError(f"listen: cannot bind {config.listen}")

    def start(self) -> GatewayServer:
        self.server.start()
        return self

    def stop(self, grace: float = 2.0) -> None:
        self.server.stop(grace).wait()
        self.gateway.close()
        if self._sink is not None:
            self._sink.close()


def run(config_path: str) -> int:
    """Entry point of ``warden gateway``: serve until SIGINT/SIGTERM. Raises GatewayConfigError."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = GatewayServer(load_config(config_path)).start()
    logger.info("warden gateway (ExtMcp, envoy ext_authz) listening on %s", server.config.listen.rsplit(":", 1)[0]
                + f":{server.port}")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0
