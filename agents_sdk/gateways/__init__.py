"""Warden behind the gateways enterprises already run, over gRPC.

- ``agents_sdk.gateways.ext_mcp``: agentgateway's ExtMCP processor (``CheckRequest`` /
  ``CheckResponse``): every ``tools/call`` decided with its arguments, masked arguments
  forwarded as a mutation, refusals with the policy's reason, call and result signed;
- ``agents_sdk.gateways.ext_authz``: Envoy's ``envoy.service.auth.v3.Authorization``: an
  agent's HTTP request (method, host, path, buffered body) decided as an ``http_request``.

Both decide through ``Guard`` (input contract, the same engine or the same sidecar, the
same signed records), so a gateway socket never adds a second policy semantics. The AuthZEN
PDP needs no gRPC and lives in ``agents_sdk.sidecar.authzen``.

``warden gateway --config gateway.yaml`` serves both (docs/interop.md). They need the
``gateways`` extra (grpcio, protobuf, xds-protos); importing this package needs nothing.
"""

from __future__ import annotations

__all__: list[str] = []
