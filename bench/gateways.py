"""Latency of the gateway sockets (#24), each beside the sidecar's native decision API, in one run.

    python bench/gateways.py [--rounds 2000] [--batches 200]

Rows, closed loop over loopback, interleaved round by round so machine load hits all alike:

- ``/v1/data/warden/decision``: the sidecar's OPA-compatible API (the peer every row is set against);
- ``/access/v1/evaluation``: one AuthZEN evaluation through the same sidecar;
- ``/access/v1/evaluations`` with 100 items (execute_all): per request and per item;
- ExtMcp ``CheckRequest`` (tools/call) and Envoy ext_authz ``Check`` over gRPC against
  ``warden gateway`` deciding through the same sidecar, signing intent and decision records.

The sidecar and a stand-in control plane run in their own processes (bench/sidecar_decisions.py);
the gateway in this process. Prints figures; never asserts a time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from sidecar_decisions import percentile, start_sidecar, start_stand_in  # noqa: E402

from agents_sdk.identity import AgentIdentity  # noqa: E402
from agents_sdk.sidecar.authzen import to_warden_input  # noqa: E402
from agents_sdk.tests.signed_bundles import registry  # noqa: E402

EVALUATION = {"subject": {"type": "agent", "id": "support-bot"},
              "action": {"name": "ticket_read", "properties": {"arguments": {"id": 1}}},
              "resource": {"type": "mcp_server", "id": "tickets"}, "context": {"session_id": "s"}}
BATCH = {"subject": EVALUATION["subject"], "resource": EVALUATION["resource"], "context": EVALUATION["context"],
         "options": {"evaluations_semantic": "execute_all"},
         "evaluations": [{"action": {"name": "ticket_read", "properties": {"arguments": {"id": i}}}} for i in range(100)]}
# The peer decides exactly the input the AuthZEN mapping builds, so the rows differ only by the socket.
NATIVE = {"input": to_warden_input(EVALUATION, registry()["warden_registry"]["agents"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()

    import grpc
    from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
    from google.protobuf import struct_pb2

    from agents_sdk.gateways.config import parse_config
    from agents_sdk.gateways.protos import ext_mcp_pb2 as pb
    from agents_sdk.gateways.protos import ext_mcp_pb2_grpc as pb_grpc
    from agents_sdk.gateways.server import GatewayServer

    stand_in, server_url, public_pem = start_stand_in()
    samples: dict[str, list[float]] = {name: [] for name in
                                       ("native", "evaluation", "batch", "ext_mcp", "ext_authz")}
    with tempfile.TemporaryDirectory() as workdir:
        process, port = start_sidecar(server_url, public_pem, workdir)
        identity = AgentIdentity.create("support-bot", "alice@example.com", ["read:tickets", "net:http"])
        identity.save(Path(workdir) / "bot.key")
        config = parse_config({"listen": "127.0.0.1:0", "identities": ["bot.key"], "log": "gw.jsonl",
                               "decision": {"opa_url": f"http://127.0.0.1:{port}", "timeout": 5}}, Path(workdir))
        gateway = GatewayServer(config).start()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port)
            connection.connect()
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            bodies = {"native": ("/v1/data/warden/decision", json.dumps(NATIVE).encode()),
                      "evaluation": ("/access/v1/evaluation", json.dumps(EVALUATION).encode()),
                      "batch": ("/access/v1/evaluations", json.dumps(BATCH).encode())}

            def post(name: str) -> dict:
                path, body = bodies[name]
                connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                return json.loads(connection.getresponse().read())

            channel = grpc.insecure_channel(f"127.0.0.1:{gateway.port}")
            mcp = pb_grpc.ExtMcpStub(channel)
            envoy = external_auth_pb2_grpc.AuthorizationStub(channel)
            metadata, params = struct_pb2.Struct(), struct_pb2.Struct()
            metadata.update({"agent": "support-bot", "session_id": "s"})
            params.update({"name": "ticket_read", "arguments": {"id": 1}})
            mcp_request = pb.McpRequest(service_name="tickets", method="tools/call", metadata_context=metadata,
                                        mcp_request=params)
            http_request = attribute_context_pb2.AttributeContext.HttpRequest(
                method="GET", host="api.example.com", path="/v1/tickets/1", scheme="https",
                headers={"x-warden-agent": "support-bot"})
            check = external_auth_pb2.CheckRequest(attributes=attribute_context_pb2.AttributeContext(
                request=attribute_context_pb2.AttributeContext.Request(http=http_request)))

            assert post("evaluation")["decision"] is True
            assert all(e["decision"] for e in post("batch")["evaluations"])
            assert mcp.CheckRequest(mcp_request).WhichOneof("result") == "pass"
            assert envoy.Check(check).status.code == 0
            calls = {"native": lambda: post("native"), "evaluation": lambda: post("evaluation"),
                     "ext_mcp": lambda: mcp.CheckRequest(mcp_request), "ext_authz": lambda: envoy.Check(check)}
            for _ in range(300):  # warm-up
                for call in calls.values():
                    call()
            batch_every = max(1, args.rounds // max(1, args.batches))
            for index in range(args.rounds):
                for name, call in calls.items():
                    started = time.perf_counter()
                    call()
                    samples[name].append(time.perf_counter() - started)
                if index % batch_every == 0:
                    started = time.perf_counter()
                    post("batch")
                    samples["batch"].append(time.perf_counter() - started)
        finally:
            gateway.stop()
            process.terminate()
            process.wait(10)
            stand_in.terminate()
            stand_in.wait(10)

    base = percentile(samples["native"], 0.5)
    labels = {"native": "sidecar POST /v1/data/warden/decision (peer)",
              "evaluation": "sidecar POST /access/v1/evaluation",
              "batch": "sidecar POST /access/v1/evaluations (100 items)",
              "ext_mcp": "gateway ExtMcp CheckRequest (gRPC, signed)",
              "ext_authz": "gateway envoy ext_authz Check (gRPC, signed)"}
    print(f"{'path':<50} {'n':>6} {'p50 µs':>9} {'p99 µs':>9} {'p50 vs peer':>12}")
    for name, label in labels.items():
        values = samples[name]
        p50, p99 = (percentile(values, f) * 1e6 for f in (0.5, 0.99))
        print(f"{label:<50} {len(values):>6} {p50:>9.0f} {p99:>9.0f} {percentile(values, 0.5) / base:>11.1f}x")
    per_item = [v / 100 for v in samples["batch"]]
    print(f"{'  per item of the 100-item batch':<50} {len(per_item):>6} {percentile(per_item, 0.5) * 1e6:>9.0f} "
          f"{percentile(per_item, 0.99) * 1e6:>9.0f} {percentile(per_item, 0.5) / base:>11.1f}x")
    print("(closed loop, one client, loopback; 2 shared cores under other engineers' load: noisy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
