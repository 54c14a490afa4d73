"""`warden sidecar`: OPA's config format, OPA's REST API, decision logs and status."""

from __future__ import annotations

import gc
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import pytest

from agents_sdk.guard import EmbeddedBackend, Guard, OPAHTTPBackend
from agents_sdk.identity import AgentIdentity
from agents_sdk.pointers import masked
from agents_sdk.sidecar import ConfigError, Sidecar, load_config, parse_config
from agents_sdk.sidecar.server import as_json
from agents_sdk.sidecar.uploads import timestamp
from agents_sdk.tests.signed_bundles import REPO_ROOT, BundleServer, RSASigner, build_bundle, library_modules, registry

# The pack's example inputs: DESIGN.md's input and one per outcome.
EXAMPLES = [
    {"agent": {"id": "support-bot", "name": "support-bot", "owner": "alice@example.com", "scopes": ["read:tickets"]},
     "action": {"type": "tool_call", "tool": "file_delete", "args": {"path": "/prod/x"}, "server": "files-mcp"},
     "context": {"session_id": "s-1", "environment": "prod", "time": "2026-01-01T00:00:00Z",
                 "on_behalf_of": [], "approval_token": "none"}},
    {"agent": {"id": "support-bot"}, "action": {"type": "tool_call", "tool": "file_delete", "args": {"path": "/prod/x"}},
     "context": {"environment": "prod"}},
    {"agent": {"id": "support-bot"}, "action": {"type": "tool_call", "tool": "ticket_read", "args": {"id": 1}}},
    {"agent": {"id": "support-bot"}, "action": {"type": "tool_call", "tool": "http_request",
                                                "args": {"url": "https://evil.test/x"}}},
    {"agent": {"id": "support-bot"}, "action": {"type": "tool_call", "tool": "ticket_read",
                                                "args": {"note": "card 4111 1111 1111 1111"}}},
    {"agent": {"id": "ghost"}, "action": {"type": "tool_call", "tool": "ticket_read", "args": {}}},
    {"agent": {"id": "support-bot"}, "action": {"type": "tool_call", "tool": "rm_rf", "args": {}}},
    {"agent": {"id": "support-bot"}, "action": {"type": "tool_call", "tool": "payment_create", "args": {"amount": 5}}},
    {"bogus": True},
]


@pytest.fixture(scope="module")
def signer() -> RSASigner:
    return RSASigner("warden-test")


@pytest.fixture
def server(signer):
    with BundleServer() as server:
        server.state.publish(build_bundle(signer, revision="rev-1"))
        yield server


def opa_config(server, signer, tmp_path, **overrides) -> dict:
    config = {
        "services": {"controlplane": {"url": server.url + "/opa", "credentials": {"bearer": {"token": "env-token"}}}},
        "labels": {"app": "billing", "environment": "prod"},
        "keys": {"warden-test": {"algorithm": "RS256", "key": signer.public_pem}},
        "bundles": {"prod": {"service": "controlplane", "resource": "bundles/prod", "persist": True,
                             "polling": {"long_polling_timeout_seconds": 5},
                             "signing": {"keyid": "warden-test"}}},
        "decision_logs": {"service": "controlplane", "reporting": {"min_delay_seconds": 60, "max_delay_seconds": 60}},
        "status": {"service": "controlplane"},
        "persistence_directory": str(tmp_path / "opa"),
    }
    config.update(overrides)
    return config


@pytest.fixture
def sidecar(server, signer, tmp_path):
    sidecar = Sidecar(parse_config(opa_config(server, signer, tmp_path)), addr="127.0.0.1:0").start()
    assert sidecar.bundles.wait_until_ready(10)
    yield sidecar
    sidecar.stop()


def request(sidecar, method, path, body=None):
    connection = http.client.HTTPConnection(*sidecar.address, timeout=5)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


# -- configuration --------------------------------------------------------------------------


def test_opas_config_yaml_is_read_with_environment_variables(tmp_path, signer, monkeypatch):
    monkeypatch.setenv("CP_TOKEN", "from-env")
    pem = "\n".join("      " + line for line in signer.public_pem.strip().splitlines())
    path = tmp_path / "config.yaml"
    path.write_text(f"""
services:
  - name: controlplane
    url: http://127.0.0.1:8000/opa
    credentials:
      bearer:
        token: "${{CP_TOKEN}}"
labels:
  app: billing
keys:
  warden:
    algorithm: RS256
    key: |
{pem}
bundles:
  prod:
    service: controlplane
    resource: bundles/prod
    persist: true
    polling:
      long_polling_timeout_seconds: 30
    signing:
      keyid: warden
decision_logs:
  service: controlplane
  reporting:
    min_delay_seconds: 5
    max_delay_seconds: 10
status:
  service: controlplane
""")
    config = load_config(path)
    assert config.services["controlplane"].token == "from-env"
    assert config.bundle.resource == "bundles/prod" and config.bundle.long_polling_timeout == 30
    assert config.bundle.verification.keyid == "warden" and config.bundle.persist is True
    assert config.decision_logs.min_delay == 5 and config.decision_logs.resource == "/logs"
    assert config.status_service == "controlplane" and config.labels == {"app": "billing"}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bundles": {}}, "exactly one bundle"),
        ({"services": {}}, "at least one service"),
        ({"services": {"cp": {"url": "ftp://x"}}}, "services.cp.url"),
        ({"keys": {}}, "signing.keyid"),
        ({"keys": {"warden-test": {"key": "nope"}}}, "keys.warden-test"),
    ],
)
def test_a_wrong_config_names_the_field(tmp_path, signer, change, message):
    class FakeServer:
        url = "http://127.0.0.1:9"

    with pytest.raises(ConfigError, match=message):
        parse_config(opa_config(FakeServer, signer, tmp_path, **change))


# -- OPA's REST API -------------------------------------------------------------------------


def test_the_sidecar_answers_the_same_decisions_as_the_embedded_engine(sidecar):
    embedded = EmbeddedBackend.from_modules(library_modules(), registry())
    outcomes = set()
    for example in EXAMPLES:
        status, answer = request(sidecar, "POST", "/v1/data/warden/decision", {"input": example})
        assert status == 200
        expected = embedded.evaluate("data.warden.decision", example)
        assert answer["result"] == expected
        assert len(answer["decision_id"]) == 36
        outcomes.add(expected["effect"])
    assert outcomes == {"allow", "deny", "require_approval"}


def test_the_guard_over_http_decides_like_the_guard_in_process(sidecar):
    bot = AgentIdentity.create("support-bot", "alice@example.com", ["read:tickets", "write:files"])
    embedded = Guard(bot, EmbeddedBackend.from_modules(library_modules(), registry()))
    remote = Guard(bot, OPAHTTPBackend(sidecar.url))
    for tool, args in [("ticket_read", {"id": 1}), ("file_delete", {"path": "/prod/x"}), ("rm_rf", {})]:
        a, b = embedded.check(tool, args, time="2026-01-01T00:00:00Z"), remote.check(tool, args, time="2026-01-01T00:00:00Z")
        assert (a.effect, a.reasons, a.obligations) == (b.effect, b.reasons, b.obligations)
        assert b.decision_id is not None


def test_undefined_results_are_left_out_and_bad_requests_are_4xx(sidecar):
    status, answer = request(sidecar, "POST", "/v1/data/warden/no_such_rule", {"input": {}})
    assert status == 200 and "result" not in answer and "decision_id" in answer
    status, answer = request(sidecar, "GET", "/v1/data/warden/default_deny")
    assert status == 200 and answer["result"]["rule"] == "default-deny"
    connection = http.client.HTTPConnection(*sidecar.address, timeout=5)
    connection.request("POST", "/v1/data/warden/decision", body=b"{not json")
    response = connection.getresponse()
    assert response.status == 400 and json.loads(response.read())["code"] == "invalid_parameter"
    assert request(sidecar, "GET", "/v1/policies")[0] == 404
    assert request(sidecar, "DELETE", "/v1/data/warden")[0] == 405


def test_one_connection_serves_many_requests(sidecar):
    connection = http.client.HTTPConnection(*sidecar.address, timeout=5)
    body = json.dumps({"input": EXAMPLES[2]})
    for _ in range(20):
        connection.request("POST", "/v1/data/warden/decision", body=body)
        response = connection.getresponse()
        assert json.loads(response.read())["result"]["allow"] is True
    connection.close()


def test_health_is_500_until_a_bundle_is_active(server, signer, tmp_path):
    server.state.token = "wrong"
    sidecar = Sidecar(parse_config(opa_config(server, signer, tmp_path)), addr="127.0.0.1:0").start()
    try:
        time.sleep(0.2)
        status, answer = request(sidecar, "GET", "/health")
        assert status == 500 and "not activated" in answer["error"]
        assert request(sidecar, "GET", "/health?bundles")[0] == 500
        # No bundle: the decision is undefined (OPA's answer), which agents treat as a deny.
        status, answer = request(sidecar, "POST", "/v1/data/warden/decision", {"input": EXAMPLES[2]})
        assert status == 200 and "result" not in answer
        bot = AgentIdentity.create("support-bot", "alice@example.com", ["read:tickets"])
        assert Guard(bot, OPAHTTPBackend(sidecar.url)).check("ticket_read", {}).reasons[0].rule == "undefined-decision"
        server.state.token = "env-token"
        assert sidecar.bundles.wait_until_ready(5)
        assert request(sidecar, "GET", "/health")[0] == 200
        assert request(sidecar, "GET", "/health?bundles") == (200, {})
    finally:
        sidecar.stop()


# -- decision logs and status ------------------------------------------------------------------


def test_decisions_are_shipped_in_opas_decision_log_format(server, sidecar):
    for example in EXAMPLES[1:3] + EXAMPLES[4:5]:
        request(sidecar, "POST", "/v1/data/warden/decision", {"input": example})
    assert sidecar.decision_logs.flush()
    (upload,) = server.state.log_uploads
    assert upload["headers"]["Content-Encoding"] == "gzip"
    assert upload["headers"]["Content-Type"] == "application/json"
    events = upload["events"]
    assert len(events) == 3
    for event in events:
        assert event["labels"]["id"] == sidecar.instance_id and event["labels"]["app"] == "billing"
        assert event["labels"]["version"].startswith("warden-sidecar-")
        assert event["path"] == "warden/decision"
        assert event["bundles"] == {"prod": {"revision": "rev-1"}}
        assert event["timestamp"].endswith("Z") and len(event["decision_id"]) == 36
        assert event["requested_by"].startswith("127.0.0.1:")
    assert events[0]["result"]["effect"] == "require_approval"
    # The policy's mask obligation keeps the card number out of the log.
    assert events[2]["input"]["action"]["args"]["note"] == "**REDACTED**"
    assert events[2]["erased"] == ["/input/action/args/note"]


def test_answers_and_log_events_are_the_bytes_of_opas_documents(server, sidecar):
    """Both are built from pre-encoded fragments at decision time; they must stay byte for
    byte what json.dumps gives for OPA's documents (key order included), with a card number
    masked, ?metrics, and decision ids that are version-4 UUIDs."""
    embedded = EmbeddedBackend.from_modules(library_modules(), registry())
    cases = [("/v1/data/warden/decision", EXAMPLES[2]), ("/v1/data/warden/decision?metrics", EXAMPLES[4]),
             ("/v1/data/warden/default_deny", EXAMPLES[1])]
    answers = []
    for target, example in cases:
        connection = http.client.HTTPConnection(*sidecar.address, timeout=5)
        connection.request("POST", target, body=json.dumps({"input": example}))
        response = connection.getresponse()
        raw = response.read()
        connection.close()
        answer = json.loads(raw)
        query = "data." + target.partition("?")[0].removeprefix("/v1/data/").replace("/", ".")
        expected = {"decision_id": answer["decision_id"], "result": as_json(embedded.evaluate(query, example))}
        if target.endswith("?metrics"):
            assert answer["metrics"]["timer_rego_query_eval_ns"] > 0
            expected["metrics"] = answer["metrics"]
        assert (response.status, raw) == (200, compact(expected))
        assert str(uuid.UUID(answer["decision_id"], version=4)) == answer["decision_id"]
        answers.append(answer)
    events = list(sidecar.decision_logs._queue)  # the encoded events, as the uploader sends them
    assert len(events) == len(cases)
    for event, (target, example), answer in zip(events, cases, answers, strict=True):
        logged = json.loads(event)
        time.strptime(logged["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert len(logged["timestamp"]) == 27 and logged["requested_by"].startswith("127.0.0.1:")
        expected = {"labels": sidecar.labels, "decision_id": answer["decision_id"],
                    "path": target.partition("?")[0].removeprefix("/v1/data/"), "requested_by": logged["requested_by"],
                    "timestamp": logged["timestamp"], "metrics": logged["metrics"],
                    "bundles": {"prod": {"revision": "rev-1"}}, "input": example}
        pointers = answer["result"].get("obligations", {}).get("mask") if isinstance(answer["result"], dict) else None
        if pointers:
            erased = [f"/input{pointer}" for pointer in pointers]
            expected["input"] = masked({"input": example}, erased, "**REDACTED**")["input"]
            expected["erased"] = erased
        expected["result"] = answer["result"]
        assert event == compact(expected)
    assert json.loads(events[1])["input"]["action"]["args"]["note"] == "**REDACTED**"


def test_the_sidecar_process_freezes_its_heap_after_each_bundle(server, signer, tmp_path):
    """`warden sidecar` moves the heap a bundle leaves out of the collector's reach, so no
    full collection walks it between decisions."""
    gc.unfreeze()
    sidecar = Sidecar(parse_config(opa_config(server, signer, tmp_path)), addr="127.0.0.1:0")
    sidecar.freeze_heap = True  # as run() sets it
    sidecar.start()
    try:
        assert sidecar.bundles.wait_until_ready(10)
        assert gc.get_freeze_count() > 0
    finally:
        sidecar.stop()
        gc.unfreeze()


@pytest.mark.parametrize("ns", [0, 1_764_514_800_000_042_000, 1_764_514_800_999_999_999, 1_764_514_801_100_000_000])
def test_log_timestamps_are_rfc3339_with_microseconds(ns):
    second, rest = divmod(ns, 1_000_000_000)
    moment = datetime.fromtimestamp(second, UTC).replace(microsecond=rest // 1000)
    assert timestamp(ns) == moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
    assert timestamp(ns) == timestamp(ns)  # the second's text is reused


def compact(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def test_failed_uploads_are_retried_and_nothing_is_lost(server, signer, tmp_path):
    config = opa_config(server, signer, tmp_path,
                        decision_logs={"service": "controlplane",
                                       "reporting": {"min_delay_seconds": 0.05, "max_delay_seconds": 0.1}})
    server.state.fail_logs = 2
    sidecar = Sidecar(parse_config(config), addr="127.0.0.1:0").start()
    try:
        assert sidecar.bundles.wait_until_ready(5)
        for _ in range(5):
            request(sidecar, "POST", "/v1/data/warden/decision", {"input": EXAMPLES[2]})
        deadline = time.monotonic() + 5
        while len(server.state.decision_events()) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sidecar.stop()
    assert server.state.fail_logs == 0
    ids = [event["decision_id"] for event in server.state.decision_events()]
    assert len(ids) == len(set(ids)) == 5
    assert sidecar.decision_logs.dropped == 0


def test_the_queue_is_bounded_and_counts_what_it_drops(server, signer, tmp_path):
    config = opa_config(server, signer, tmp_path,
                        decision_logs={"service": "controlplane", "reporting": {"buffer_size_limit_events": 3}})
    sidecar = Sidecar(parse_config(config), addr="127.0.0.1:0").start()
    try:
        assert sidecar.bundles.wait_until_ready(5)
        for _ in range(5):
            request(sidecar, "POST", "/v1/data/warden/decision", {"input": EXAMPLES[2]})
        assert sidecar.decision_logs.pending == 3 and sidecar.decision_logs.dropped == 2
        assert sidecar.status()["decision_logs"]["metrics"]["counter_decision_logs_dropped"] == 2
    finally:
        sidecar.stop()


def test_uploads_are_split_to_respect_the_size_limit(server, signer, tmp_path):
    config = opa_config(server, signer, tmp_path,
                        decision_logs={"service": "controlplane", "reporting": {"upload_size_limit_bytes": 1500}})
    sidecar = Sidecar(parse_config(config), addr="127.0.0.1:0").start()
    try:
        assert sidecar.bundles.wait_until_ready(5)
        for _ in range(30):
            request(sidecar, "POST", "/v1/data/warden/decision",
                    {"input": {**EXAMPLES[2], "context": {"session_id": os.urandom(40).hex()}}})
        assert sidecar.decision_logs.flush()
    finally:
        sidecar.stop()
    assert len(server.state.log_uploads) > 1
    assert all(upload["size"] <= 1500 for upload in server.state.log_uploads)
    assert len(server.state.decision_events()) == 30


def test_status_is_posted_as_opa_does(server, sidecar):
    deadline = time.monotonic() + 5
    while not server.state.status_reports and time.monotonic() < deadline:
        time.sleep(0.02)
    report = server.state.status_reports[-1]
    assert report["headers"]["Content-Type"] == "application/json"
    assert "Content-Encoding" not in report["headers"]
    body = report["report"]
    assert body["labels"]["id"] == sidecar.instance_id
    bundle = body["bundles"]["prod"]
    assert bundle["name"] == "prod" and bundle["active_revision"] == "rev-1"
    for stamp in ("last_request", "last_successful_request", "last_successful_download", "last_successful_activation"):
        assert stamp in bundle
    assert body["plugins"]["bundle"]["state"] == "OK"


def test_a_new_bundle_reaches_the_sidecars_decisions(server, signer, sidecar):
    assert request(sidecar, "POST", "/v1/data/warden/decision", {"input": EXAMPLES[2]})[1]["result"]["allow"] is True
    server.state.publish(build_bundle(signer, revision="rev-2", data=registry(**{"support-bot": "suspended"})))
    deadline = time.monotonic() + 3
    while sidecar.backend.revision != "rev-2" and time.monotonic() < deadline:
        time.sleep(0.01)
    result = request(sidecar, "POST", "/v1/data/warden/decision", {"input": EXAMPLES[2]})[1]["result"]
    assert result["effect"] == "deny"
    assert "agent-not-active" in [r["rule"] for r in result["reasons"]]


def test_the_persisted_bundle_serves_when_the_control_plane_is_down(server, signer, tmp_path):
    config = parse_config(opa_config(server, signer, tmp_path))
    first = Sidecar(config, addr="127.0.0.1:0").start()
    assert first.bundles.wait_until_ready(5)
    first.stop()
    server.stop()
    second = Sidecar(config, addr="127.0.0.1:0").start()
    try:
        assert second.bundles.status().source == "persisted"
        assert request(second, "GET", "/health")[0] == 200
        assert request(second, "POST", "/v1/data/warden/decision", {"input": EXAMPLES[2]})[1]["result"]["allow"] is True
    finally:
        second.stop()


def test_warden_sidecar_command_serves_until_terminated(server, signer, tmp_path):
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(opa_config(server, signer, tmp_path)))
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "agents_sdk", "sidecar", "--config", str(config_path), "--addr", f"127.0.0.1:{port}"],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                connection.request("GET", "/health")
                status = connection.getresponse().status
                connection.close()
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
    assert process.returncode == 0


def test_a_bad_config_file_is_a_usage_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("services: {}\n")
    result = subprocess.run(
        [sys.executable, "-m", "agents_sdk", "sidecar", "--config", str(path)],
        check=False, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert "at least one service" in result.stderr


# -- hostile input ------------------------------------------------------------------------------


def raw_post(sidecar, path: str, body: bytes) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(*sidecar.address, timeout=10)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_lone_surrogate_is_a_fail_closed_deny_naming_the_field_and_the_sidecar_lives_on(server, sidecar):
    body = json.dumps({"input": {**EXAMPLES[2], "action": {**EXAMPLES[2]["action"], "args": {"q": "\ud800"}}}})
    status, answer = raw_post(sidecar, "/v1/data/warden/decision", body.encode())
    assert status == 200
    reason = answer["result"]["reasons"][0]
    assert answer["result"]["effect"] == "deny" and reason["rule"] == "malformed-input"
    assert reason["message"].startswith("/input/action/args/q contains a lone surrogate")
    # Any other path: a 400 naming the field, never the engine.
    status, answer = raw_post(sidecar, "/v1/data/warden", b'{"input": {"n": 1e400}}')
    assert status == 400 and answer["message"].startswith("/input/n is inf")
    # Deeper than Python's JSON parser goes: a 400, not a crash of the handler.
    status, answer = raw_post(sidecar, "/v1/data/warden/decision", b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert status == 400 and "nested too deeply" in answer["message"]
    # Still serving, and the refused input was never shipped as a decision-log input.
    assert request(sidecar, "POST", "/v1/data/warden/decision", {"input": EXAMPLES[2]})[1]["result"]["allow"] is True


def test_an_evaluation_error_of_the_decision_is_a_deny_not_a_500(server, signer, tmp_path):
    broken = {"warden/decision.rego": "package warden\n\nimport rego.v1\n\ndecision := 1 / input.zero\n"}
    server.state.publish(build_bundle(signer, revision="broken", modules=broken))
    sidecar = Sidecar(parse_config(opa_config(server, signer, tmp_path)), addr="127.0.0.1:0").start()
    try:
        assert sidecar.bundles.wait_until_ready(10)
        status, answer = request(sidecar, "POST", "/v1/data/warden/decision", {"input": {"zero": 0}})
        assert status == 200 and answer["result"]["effect"] == "deny"
        reason = answer["result"]["reasons"][0]
        assert reason["rule"] == "engine-error" and "divide by zero" in reason["message"]
    finally:
        sidecar.stop()
