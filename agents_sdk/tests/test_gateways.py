"""`warden gateway` over real gRPC: agentgateway's ExtMcp (the vendored proto) and Envoy's
ext_authz (envoy.service.auth.v3 from xds-protos), deciding with the shipped pack, both
embedded and through a real `warden sidecar`, and signing records that verify."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import grpc
import pytest
from envoy.config.core.v3 import address_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from google.protobuf import struct_pb2
from google.rpc import code_pb2

from agents_sdk.gateways.config import Gateway, GatewayConfigError, parse_config
from agents_sdk.gateways.protos import ext_mcp_pb2 as pb
from agents_sdk.gateways.protos import ext_mcp_pb2_grpc as pb_grpc
from agents_sdk.gateways.server import GatewayServer
from agents_sdk.guard import EmbeddedBackend, OPAHTTPBackend
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import canonical_json, read_jsonl
from agents_sdk.sidecar import Sidecar
from agents_sdk.sidecar import parse_config as sidecar_config
from agents_sdk.tests.signed_bundles import BundleServer, RSASigner, build_bundle, library_modules, registry
from agents_sdk.tests.test_sidecar import opa_config
from agents_sdk.verify import verify_records

MASK_POLICY = """package warden.org.cards

import rego.v1

# Card numbers never reach the upstream nor the audit log.
mask contains "/action/args/card_number" if input.action.args.card_number
"""


def policy_data() -> dict:
    data = registry()
    data["warden_registry"]["tools"]["customer_update"] = {"scopes": ["read:tickets"]}
    return data


@pytest.fixture
def identity() -> AgentIdentity:
    return AgentIdentity.create("support-bot", "alice@example.com", ["read:tickets", "net:http", "payments:create"])


@pytest.fixture
def gateway_server(identity, tmp_path):
    key = tmp_path / "support-bot.key"
    identity.save(key)
    config = parse_config({"listen": "127.0.0.1:0", "identities": [key.name], "environment": "prod",
                           "log": "gateway.jsonl", "decision": {"policy_dir": "unused"}}, tmp_path)
    backend = EmbeddedBackend.from_modules({**library_modules(), "org/cards.rego": MASK_POLICY}, policy_data())
    server = GatewayServer(config, gateway=Gateway([identity], backend, environment="prod",
                                                   sink=_sink(tmp_path / "gateway.jsonl"))).start()
    yield server
    server.stop()


def _sink(path):
    from agents_sdk.records import JSONLSink

    return JSONLSink(path)


def struct(value: dict) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def ext_mcp(server) -> pb_grpc.ExtMcpStub:
    return pb_grpc.ExtMcpStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))


def tools_call(name: str, arguments: dict, **metadata) -> pb.McpRequest:
    return pb.McpRequest(service_name="tickets", method="tools/call",
                         metadata_context=struct({"agent": "support-bot", "session_id": "s-gw", **metadata}),
                         mcp_request=struct({"name": name, "arguments": arguments}))


def records(tmp_path, identity) -> list[dict]:
    log = read_jsonl(tmp_path / "gateway.jsonl")
    assert verify_records(log, {identity.key_id: identity.public_key}).ok
    return log


# -- ExtMcp ------------------------------------------------------------------------------------


def test_ext_mcp_allows_and_signs_call_and_result(gateway_server, tmp_path, identity):
    stub = ext_mcp(gateway_server)
    answer = stub.CheckRequest(tools_call("ticket_read", {"id": 42}))
    assert answer.WhichOneof("result") == "pass"
    result = {"content": [{"type": "text", "text": "ticket 42: printer on fire"}], "isError": False}
    response = stub.CheckResponse(pb.McpResponse(service_name="tickets", method="tools/call",
                                                 metadata_context=struct({"agent": "support-bot", "session_id": "s-gw"}),
                                                 mcp_response=struct(result)))
    assert response.WhichOneof("result") == "pass"
    log = records(tmp_path, identity)
    assert [r["kind"] for r in log] == ["intent", "decision", "result"]
    assert log[0]["payload"]["tool"] == "ticket_read" and log[0]["payload"]["args"] == {"id": 42}  # 42, not 42.0
    assert log[1]["payload"]["effect"] == "allow"
    assert "1 content block(s), isError=false, sha256:" in log[2]["payload"]["summary"]
    assert all(r["session_id"] == "s-gw" for r in log)


def test_ext_mcp_refuses_with_the_policys_reason(gateway_server, tmp_path, identity):
    stub = ext_mcp(gateway_server)
    answer = stub.CheckRequest(tools_call("http_request", {"url": "https://evil.test/x"}))
    assert answer.WhichOneof("result") == "error"
    assert answer.error.code == pb.AuthorizationError.PERMISSION_DENIED
    assert "egress" in answer.error.reason
    held = stub.CheckRequest(tools_call("payment_create", {"amount": 5}))
    assert held.error.code == pb.AuthorizationError.PERMISSION_DENIED
    assert held.error.reason.startswith("waiting for human approval: payment-requires-approval")
    log = records(tmp_path, identity)
    assert [r["kind"] for r in log] == ["intent", "decision", "result"] * 2
    assert log[2]["payload"]["summary"].startswith("not run (deny)")


def test_ext_mcp_masks_arguments_as_a_mutation(gateway_server, tmp_path, identity):
    stub = ext_mcp(gateway_server)
    answer = stub.CheckRequest(tools_call("customer_update", {"name": "Ann", "card_number": "4111111111111111"}))
    assert answer.WhichOneof("result") == "mutated"
    mutated = json.loads(json.dumps(dict(answer.mutated)["arguments"], default=dict))
    assert mutated == {"name": "Ann", "card_number": "**REDACTED**"}
    assert dict(answer.mutated)["name"] == "customer_update"
    log = records(tmp_path, identity)
    assert "4111111111111111" not in json.dumps(log)


def test_ext_mcp_refuses_agents_it_holds_no_key_for_and_malformed_calls(gateway_server):
    stub = ext_mcp(gateway_server)
    answer = stub.CheckRequest(tools_call("ticket_read", {}, agent="intruder-bot"))
    assert answer.error.code == pb.AuthorizationError.PERMISSION_DENIED and "intruder-bot" in answer.error.reason
    bad = pb.McpRequest(method="tools/call", metadata_context=struct({"agent": "support-bot"}),
                        mcp_request=struct({"name": "ticket_read", "arguments": [1, 2]}))
    assert stub.CheckRequest(bad).error.code == pb.AuthorizationError.INVALID
    nameless = pb.McpRequest(method="tools/call", mcp_request=struct({"arguments": {}}))
    assert stub.CheckRequest(nameless).error.code == pb.AuthorizationError.INVALID
    # Protobuf cannot carry a lone surrogate; NUL it can, and the input contract refuses it.
    nul = stub.CheckRequest(tools_call("ticket_read", {"note": "a\x00b"}))
    assert nul.WhichOneof("result") == "error" and "U+0000" in nul.error.reason
    listing = stub.CheckRequest(pb.McpRequest(method="tools/list", metadata_context=struct({"agent": "x"})))
    assert listing.WhichOneof("result") == "pass"


def test_ext_mcp_through_a_real_sidecar(identity, tmp_path):
    signer = RSASigner("warden-test")
    with BundleServer() as bundles:
        bundles.state.publish(build_bundle(signer, data=policy_data()))
        sidecar = Sidecar(sidecar_config(opa_config(bundles, signer, tmp_path)), addr="127.0.0.1:0").start()
        try:
            assert sidecar.bundles.wait_until_ready(10)
            key = tmp_path / "bot.key"
            identity.save(key)
            config = parse_config({"listen": "127.0.0.1:0", "identities": [str(key)], "log": "gw.jsonl",
                                   "decision": {"opa_url": sidecar.url, "timeout": 5}}, tmp_path)
            assert isinstance(config.backend(), OPAHTTPBackend)
            server = GatewayServer(config).start()
            try:
                stub = ext_mcp(server)
                first = stub.CheckRequest(tools_call("ticket_read", {"id": 1}))
                assert first.WhichOneof("result") == "pass", first
                denied = stub.CheckRequest(tools_call("http_request", {"url": "https://evil.test/"}))
                assert denied.WhichOneof("result") == "error"
            finally:
                server.stop()
            assert sidecar.decision_logs.flush()
            tools = [e["input"]["action"]["tool"] for e in bundles.state.decision_events()]
            assert tools == ["ticket_read", "http_request"]
            log = read_jsonl(tmp_path / "gw.jsonl")
            assert verify_records(log, {identity.key_id: identity.public_key}).ok and len(log) == 5
        finally:
            sidecar.stop()


# -- Envoy ext_authz ---------------------------------------------------------------------------


def check_request(method: str, host: str, path: str, *, body: str = "", agent: str | None = "support-bot",
                  **headers: str) -> external_auth_pb2.CheckRequest:
    all_headers = {k.replace("_", "-"): v for k, v in headers.items()}
    if agent is not None:
        all_headers["x-warden-agent"] = agent
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        id="req-1", method=method, host=host, path=path, scheme="https", headers=all_headers, body=body,
        size=len(body.encode()), protocol="HTTP/1.1")
    source = attribute_context_pb2.AttributeContext.Peer(
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address="10.0.0.7", port_value=40000)))
    return external_auth_pb2.CheckRequest(attributes=attribute_context_pb2.AttributeContext(
        source=source, request=attribute_context_pb2.AttributeContext.Request(http=http)))


def envoy(server) -> external_auth_pb2_grpc.AuthorizationStub:
    return external_auth_pb2_grpc.AuthorizationStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))


def header_map(response) -> dict[str, str]:
    return {h.header.key: h.header.value for h in response.denied_response.headers}


def test_ext_authz_allows_an_allowed_host(gateway_server, tmp_path, identity):
    response = envoy(gateway_server).Check(check_request("GET", "api.example.com", "/v1/tickets?id=1"))
    assert response.status.code == code_pb2.OK and response.WhichOneof("http_response") == "ok_response"
    log = records(tmp_path, identity)
    assert log[0]["payload"]["tool"] == "http_request"
    assert log[0]["payload"]["args"]["url"] == "https://api.example.com/v1/tickets?id=1"
    assert log[1]["payload"]["effect"] == "allow"


def test_ext_authz_denies_with_the_reason_in_headers(gateway_server, tmp_path, identity):
    response = envoy(gateway_server).Check(check_request("POST", "evil.test", "/exfil",
                                                         body='{"rows": 10000}', content_type="application/json"))
    assert response.status.code == code_pb2.PERMISSION_DENIED
    assert response.denied_response.status.code == 403
    headers = header_map(response)
    assert headers["x-warden-effect"] == "deny" and "egress" in headers["x-warden-rule"]
    assert headers["x-warden-reason"].startswith(headers["x-warden-rule"] + ": ")
    body = json.loads(response.denied_response.body)
    assert body["effect"] == "deny" and body["reasons"][0]["rule"] == headers["x-warden-rule"]
    log = records(tmp_path, identity)
    assert log[0]["payload"]["args"]["json"] == {"rows": 10000} and log[2]["kind"] == "result"


def test_ext_authz_refuses_unknown_agents_and_hostile_headers(gateway_server):
    stub = envoy(gateway_server)
    response = stub.Check(check_request("GET", "api.example.com", "/", agent="intruder-bot"))
    assert response.denied_response.status.code == 403
    assert header_map(response)["x-warden-rule"] == "unknown-agent"
    # With one key and no agent header, the request is the only agent's (as agentgateway's ExtMcp).
    assert stub.Check(check_request("GET", "api.example.com", "/", agent=None)).status.code == code_pb2.OK
    # A body that is not valid UTF-8 and a session id that would break the response headers.
    response = stub.Check(check_request("POST", "evil.test", "/x", body="\u0000\r\nSet-Cookie: a=b",
                                         x_warden_session="s\r\nx-injected: 1"))
    assert response.denied_response.status.code in (400, 403)
    for header in response.denied_response.headers:
        assert "\r" not in header.header.value and "\n" not in header.header.value


def test_gateway_config_errors_name_the_field(tmp_path):
    for raw, field in [({}, "identities"), ({"identities": ["k"]}, "decision"),
                       ({"identities": ["k"], "decision": {}, "listen": "nope"}, "listen"),
                       ({"identities": ["k"], "decision": {}, "ext_authz": {"max_body_bytes": -1}}, "ext_authz")]:
        with pytest.raises(GatewayConfigError, match=field):
            parse_config(raw, tmp_path)
    with pytest.raises(GatewayConfigError, match="decision"):
        parse_config({"identities": ["k"], "decision": {}}, tmp_path).backend()


def test_generated_ext_mcp_code_matches_the_vendored_proto(tmp_path):
    # `make gateway-protos` output, regenerated here: the committed code must not drift from the proto.
    import shutil

    from grpc_tools import protoc

    from agents_sdk.tests.signed_bundles import REPO_ROOT

    protos = REPO_ROOT / "agents_sdk" / "gateways" / "protos"
    shutil.copy(protos / "ext_mcp.proto", tmp_path / "ext_mcp.proto")
    include = str(Path(protoc.__file__).parent / "_proto")
    assert protoc.main(["protoc", f"-I{tmp_path}", f"-I{include}", f"--python_out={tmp_path}",
                        f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}", str(tmp_path / "ext_mcp.proto")]) == 0
    grpc_code = (tmp_path / "ext_mcp_pb2_grpc.py").read_text().replace(
        "\nimport ext_mcp_pb2 as", "\nfrom agents_sdk.gateways.protos import ext_mcp_pb2 as")
    assert grpc_code == (protos / "ext_mcp_pb2_grpc.py").read_text()
    for name in ("ext_mcp_pb2.py", "ext_mcp_pb2.pyi"):
        assert (tmp_path / name).read_text() == (protos / name).read_text(), name


def test_held_call_is_filed_for_approval_and_refused_until_granted(identity, tmp_path):
    # The control plane is down here: the request waits in the spool (agents_sdk.approvals),
    # and the gateway still refuses the held call with the policy's reason.
    key = tmp_path / "bot.key"
    identity.save(key)
    port = _free_port()
    config = parse_config({"listen": "127.0.0.1:0", "identities": [key.name], "log": "gw.jsonl",
                           "approvals": {"url": f"http://127.0.0.1:{port}", "spool_dir": "spool"},
                           "decision": {"policy_dir": "unused"}}, tmp_path)
    assert config.approvals_spool_dir == tmp_path / "spool"
    from agents_sdk.approvals import ApprovalClient

    backend = EmbeddedBackend.from_modules({**library_modules(), "org/cards.rego": MASK_POLICY}, policy_data())
    gateway = Gateway([identity], backend, environment="prod",
                      approvals=lambda who: ApprovalClient(who, config.approvals_url, spool_dir=tmp_path / "spool",
                                                           timeout=0.5))
    server = GatewayServer(config, gateway=gateway).start()
    try:
        held = ext_mcp(server).CheckRequest(tools_call("payment_create", {"amount": 7}))
        assert held.WhichOneof("result") == "error"
        assert "payment-requires-approval" in held.error.reason
        spooled = [json.loads(p.read_text()) for p in (tmp_path / "spool").glob("*.request.json")]
        assert [(r["tool"], r["args"]) for r in spooled] == [("payment_create", {"amount": 7})]
    finally:
        server.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_sdk_and_the_sidecar_import_without_the_gateways_extra():
    import subprocess
    import sys

    from agents_sdk.tests.signed_bundles import REPO_ROOT

    code = ("import sys\n"
            "for name in ('grpc', 'google.protobuf', 'envoy'):\n    sys.modules[name] = None  # as if not installed\n"
            "import agents_sdk, agents_sdk.gateways, agents_sdk.sidecar, agents_sdk.sidecar.authzen, agents_sdk.cli\n"
            "try:\n    import agents_sdk.gateways.server\nexcept ImportError:\n    print('extra needed')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "extra needed"


def test_results_pair_with_their_calls_by_call_id_and_unanswered_calls_are_recorded(identity, tmp_path):
    from agents_sdk.gateways.ext_mcp import ExtMcpProcessor
    from agents_sdk.records import JSONLSink

    sink = JSONLSink(tmp_path / "log.jsonl")
    backend = EmbeddedBackend.from_modules({**library_modules(), "org/cards.rego": MASK_POLICY}, policy_data())
    processor = ExtMcpProcessor(Gateway([identity], backend, sink=sink), pending_seconds=3600)
    for call_id, tool in (("7", "ticket_read"), ("8", "customer_update")):
        assert processor.CheckRequest(tools_call(tool, {"id": 1}, call_id=call_id), None).WhichOneof("result") == "pass"

    def respond(call_id: str, text: str) -> None:
        processor.CheckResponse(pb.McpResponse(method="tools/call", metadata_context=struct(
            {"agent": "support-bot", "session_id": "s-gw", "call_id": call_id}),
            mcp_response=struct({"content": [{"type": "text", "text": text}]})), None)

    respond("8", "second")  # answered out of order: still paired with call 8
    respond("7", "first")
    respond("9", "never called")  # matches nothing: no record
    processor.pending_seconds = 0
    processor.CheckRequest(tools_call("ticket_read", {"id": 3}, call_id="10"), None)
    time.sleep(0.01)
    processor.CheckRequest(tools_call("ticket_read", {"id": 4}, call_id="11"), None)  # expires call 10
    sink.close()
    log = read_jsonl(tmp_path / "log.jsonl")
    assert verify_records(log, {identity.key_id: identity.public_key}).ok
    results = [(r["payload"]["tool"], r["payload"]["summary"]) for r in log if r["kind"] == "result"]
    digest = {text: hashlib.sha256(canonical_json({"content": [{"type": "text", "text": text}], "isError": False}))
              .hexdigest() for text in ("first", "second")}
    assert results[0][0] == "customer_update" and results[0][1].endswith(digest["second"])
    assert results[1][0] == "ticket_read" and results[1][1].endswith(digest["first"])
    assert results[2][1].startswith("no result") and len(results) == 3
