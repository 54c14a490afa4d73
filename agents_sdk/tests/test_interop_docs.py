"""docs/interop.md's examples, run: the AuthZEN requests against a real sidecar, the gateway
config through `warden gateway` as a process (gRPC clients for ExtMcp and ext_authz), the Envoy
filter parsed by the Envoy protos, and the Istio provider checked against the gateway config."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys

import grpc
import pytest
import yaml
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.protobuf import json_format

from agents_sdk.gateways.config import parse_config
from agents_sdk.gateways.protos import ext_mcp_pb2 as pb
from agents_sdk.gateways.protos import ext_mcp_pb2_grpc as pb_grpc
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import read_jsonl
from agents_sdk.sidecar import Sidecar
from agents_sdk.sidecar import parse_config as sidecar_config
from agents_sdk.tests.signed_bundles import REPO_ROOT, BundleServer, RSASigner, build_bundle
from agents_sdk.tests.test_authzen import call
from agents_sdk.tests.test_gateways import check_request, header_map, struct, tools_call
from agents_sdk.tests.test_sidecar import opa_config
from agents_sdk.verify import verify_records

PAGE = (REPO_ROOT / "docs" / "interop.md").read_text("utf-8")


def example(name: str, language: str) -> str:
    found = re.search(rf"<!-- example: {name} -->\n```{language}\n(.*?)```", PAGE, re.DOTALL)
    assert found, f"docs/interop.md has no {language} example {name!r}"
    return found.group(1)


def answer_after(name: str) -> dict:
    after = PAGE[PAGE.index(f"<!-- example: {name} -->"):]
    return json.loads(re.search(r"It answers[^\n]*:\n\n```json\n(.*?)```", after, re.DOTALL).group(1))


def contains(actual, shown) -> bool:
    """The page shows a part of the answer: every key it shows is there with that value ("…": any)."""
    if shown == "…":
        return True
    if isinstance(shown, dict):
        return isinstance(actual, dict) and all(k in actual and contains(actual[k], v) for k, v in shown.items())
    if isinstance(shown, list):
        return isinstance(actual, list) and len(actual) == len(shown) and all(map(contains, actual, shown))
    return actual == shown


@pytest.fixture(scope="module")
def bundles():
    with BundleServer() as server:
        server.signer = RSASigner("warden-test")
        server.state.publish(build_bundle(server.signer))
        yield server


@pytest.fixture
def sidecar(bundles, tmp_path):
    sidecar = Sidecar(sidecar_config(opa_config(bundles, bundles.signer, tmp_path)), addr="127.0.0.1:0").start()
    assert sidecar.bundles.wait_until_ready(10)
    yield sidecar
    sidecar.stop()


def test_authzen_evaluation_example_answers_as_shown(sidecar):
    status, answer = call(sidecar, "POST", "/access/v1/evaluation", json.loads(example("authzen-evaluation", "json")))
    assert status == 200
    assert contains(answer, answer_after("authzen-evaluation")), answer


def test_authzen_batch_example_stops_at_the_first_deny(sidecar):
    status, answer = call(sidecar, "POST", "/access/v1/evaluations", json.loads(example("authzen-batch", "json")))
    assert status == 200 and [e["decision"] for e in answer["evaluations"]] == [True, False]


def test_coaz_example_is_decided_as_the_agent_for_the_user(sidecar, bundles):
    status, answer = call(sidecar, "POST", "/access/v1/evaluation", json.loads(example("coaz", "json")))
    assert status == 200 and answer["decision"] is True
    assert sidecar.decision_logs.flush()
    event = {e["decision_id"]: e for e in bundles.state.decision_events()}[answer["context"]["id"]]
    assert event["input"]["agent"]["id"] == "support-bot"
    assert event["input"]["action"] == {"type": "tool_call", "tool": "ticket_read", "verb": "tools/call",
                                        "args": {"id": 7}, "server": "tickets"}
    assert event["input"]["context"]["user"] == {"type": "user", "id": "alice@example.com", "department": "support"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_warden_gateway_runs_the_pages_config(sidecar, tmp_path):
    raw = yaml.safe_load(example("gateway-config", "yaml"))
    port = free_port()
    raw["listen"] = f"127.0.0.1:{port}"
    raw["decision"]["opa_url"] = sidecar.url  # the page's sidecar address, on a free port here
    raw["decision"]["timeout"] = 5
    parse_config(raw, tmp_path)  # valid as written
    identity = AgentIdentity.create("support-bot", "alice@example.com", ["read:tickets", "net:http"])
    identity.save(tmp_path / "support-bot.key")
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(raw))
    process = subprocess.Popen([sys.executable, "-m", "agents_sdk", "gateway", "--config", "gateway.yaml"],
                               cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        mcp = pb_grpc.ExtMcpStub(channel)
        assert mcp.CheckRequest(tools_call("ticket_read", {"id": 3})).WhichOneof("result") == "pass"
        mcp.CheckResponse(pb.McpResponse(method="tools/call", metadata_context=struct({"agent": "support-bot",
                                                                                         "session_id": "s-gw"}),
                                         mcp_response=struct({"content": [], "isError": False})))
        denied = external_auth_pb2_grpc.AuthorizationStub(channel).Check(check_request("GET", "evil.test", "/"))
        assert denied.denied_response.status.code == 403 and header_map(denied)["x-warden-effect"] == "deny"
        channel.close()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    log = read_jsonl(tmp_path / "var" / "gateway.jsonl")
    assert [r["kind"] for r in log] == ["intent", "decision", "result", "intent", "decision", "result"]
    assert verify_records(log, {identity.key_id: identity.public_key}).ok


def test_a_bad_gateway_config_is_a_usage_error(tmp_path):
    (tmp_path / "gateway.yaml").write_text("listen: nowhere\nidentities: [a.key]\ndecision: {}\n")
    result = subprocess.run([sys.executable, "-m", "agents_sdk", "gateway", "--config", "gateway.yaml"],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "listen:" in result.stderr


def test_envoy_filter_example_is_a_valid_ext_authz_filter():
    assert ext_authz_pb2.ExtAuthz  # registers the typed_config's type for the Any below
    gateway = yaml.safe_load(example("gateway-config", "yaml"))
    raw = yaml.safe_load(example("envoy-ext-authz", "yaml"))
    http_filter = json_format.ParseDict(raw, hcm.HttpFilter())
    config = ext_authz_pb2.ExtAuthz()
    assert http_filter.typed_config.Unpack(config)
    assert config.grpc_service.envoy_grpc.cluster_name == "warden_gateway"
    assert config.with_request_body.max_request_bytes == gateway["ext_authz"]["max_body_bytes"]
    assert not config.failure_mode_allow


def test_istio_example_points_at_the_gateway():
    gateway = yaml.safe_load(example("gateway-config", "yaml"))
    mesh, policy = yaml.safe_load_all(example("istio", "yaml"))
    (provider,) = mesh["meshConfig"]["extensionProviders"]
    assert provider["envoyExtAuthzGrpc"]["port"] == int(gateway["listen"].rsplit(":", 1)[1])
    assert provider["envoyExtAuthzGrpc"]["includeRequestBodyInCheck"]["maxRequestBytes"] == \
        gateway["ext_authz"]["max_body_bytes"]
    assert policy["spec"]["action"] == "CUSTOM" and policy["spec"]["provider"]["name"] == provider["name"]


def test_the_page_stays_in_step_with_the_code():
    from agents_sdk.sidecar.authzen import MAX_EVALUATIONS, SEMANTICS

    assert f"at most {MAX_EVALUATIONS:,} items" in PAGE
    assert all(f"`{s}`" in PAGE for s in SEMANTICS)
