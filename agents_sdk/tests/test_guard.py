"""The Guard: the policy input it builds, the decorator, fail-closed behaviour, signing."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agents_sdk.errors import ApprovalRequired, PolicyViolationError
from agents_sdk.guard import Decision, EmbeddedBackend, Guard, OPAHTTPBackend, masked
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from agents_sdk.tests.signed_bundles import library_modules, registry
from agents_sdk.verify import verify_records

PROD_DELETE_APPROVAL = "apr-1"


@pytest.fixture(scope="module")
def pack_backend() -> EmbeddedBackend:
    data = registry()
    data["warden_registry"]["environment"] = "prod"
    data["warden_registry"]["approvals"] = {
        PROD_DELETE_APPROVAL: {
            "agent_id": "support-bot", "environment": "prod", "tool": "file_delete", "args": {"path": "/prod/x"},
            "expires_at_ns": 4102444800000000000,
        }
    }
    return EmbeddedBackend.from_modules(library_modules(), data)


@pytest.fixture
def support_bot() -> AgentIdentity:
    return AgentIdentity.create("support-bot", "alice@example.com", ["read:tickets", "write:files", "net:http"])


@pytest.fixture
def guard(support_bot, pack_backend) -> Guard:
    return Guard(support_bot, pack_backend, environment="prod", session_id="s-1")


class RecordingBackend:
    """Answers a fixed result and keeps the inputs it was asked about."""

    def __init__(self, result):
        self.result = result
        self.inputs = []

    def decide(self, input, *, timeout=None):
        self.inputs.append(input)
        return self.result, None

    def close(self):
        pass


ALLOW = {"allow": True, "effect": "allow", "reasons": [], "obligations": {"log": True, "mask": []}}


def test_the_input_follows_the_design_contract(support_bot):
    backend = RecordingBackend(ALLOW)
    guard = Guard(support_bot, backend, environment="prod", session_id="s-default")
    guard.check(
        "file_delete", {"path": "/prod/x"}, on_behalf_of="orchestrator", approval_token="apr-1",
        counters={"agent": {"support-bot": 3}}, server="files-mcp",
    )
    (sent,) = backend.inputs
    assert sent["agent"] == {
        "id": "support-bot", "name": "support-bot", "owner": "alice@example.com",
        "scopes": ["read:tickets", "write:files", "net:http"],
    }
    assert sent["action"] == {"type": "tool_call", "tool": "file_delete", "args": {"path": "/prod/x"}, "server": "files-mcp"}
    context = dict(sent["context"])
    moment = context.pop("time")
    assert moment.endswith("Z") and datetime.fromisoformat(moment.replace("Z", "+00:00")).tzinfo is not None
    assert context == {
        "session_id": "s-default", "environment": "prod", "on_behalf_of": ["orchestrator"],
        "approval_token": "apr-1", "counters": {"agent": {"support-bot": 3}},
    }


def test_context_blocks_add_to_every_check_inside_them(support_bot):
    backend = RecordingBackend(ALLOW)
    guard = Guard(support_bot, backend)
    with guard.context(session_id="s-9", approval_token="tok"):
        guard.check("ticket_read", {})
    guard.check("ticket_read", {})
    assert backend.inputs[0]["context"]["approval_token"] == "tok"
    assert backend.inputs[0]["context"]["session_id"] == "s-9"
    assert "approval_token" not in backend.inputs[1]["context"]


def test_an_allowed_call_runs(guard):
    calls = []

    @guard.tool
    def ticket_read(ticket_id: int) -> str:
        calls.append(ticket_id)
        return "ticket"

    assert ticket_read(4711) == "ticket"
    assert calls == [4711]
    assert guard.check("ticket_read", {"ticket_id": 1}).allow is True


def test_a_denied_call_raises_the_policy_message_and_never_runs(guard):
    calls = []

    @guard.tool
    def http_request(url: str, method: str = "GET") -> None:
        calls.append(url)

    with pytest.raises(PolicyViolationError) as caught:
        http_request("https://evil.test/exfiltrate")
    assert str(caught.value).startswith("egress-not-allowlisted: ")
    assert caught.value.rule == "egress-not-allowlisted"
    assert caught.value.decision.effect == "deny"
    assert calls == []


def test_a_call_that_needs_approval_raises_approval_required_and_never_runs(guard):
    calls = []

    @guard.tool(name="file_delete")
    def delete(path: str) -> None:
        calls.append(path)

    with pytest.raises(ApprovalRequired) as caught:
        delete("/prod/x")
    assert caught.value.tool == "file_delete"
    assert caught.value.tool_args == {"path": "/prod/x"}
    assert caught.value.approval_request()["args"] == {"path": "/prod/x"}
    assert [r.rule for r in caught.value.reasons] == ["no-prod-deletes"]
    assert "Production file deletion requires human approval" in str(caught.value)
    assert calls == []
    # Once a person approved exactly this call, the same call goes through.
    with guard.context(approval_token=PROD_DELETE_APPROVAL):
        delete("/prod/x")
    assert calls == ["/prod/x"]


def test_async_tools_are_checked_before_they_run(guard):
    calls = []

    @guard.tool
    async def http_request(url: str) -> str:
        calls.append(url)
        return "ok"

    assert asyncio.run(http_request("https://api.example.com/x")) == "ok"
    with pytest.raises(PolicyViolationError):
        asyncio.run(http_request("https://evil.test/"))
    assert calls == ["https://api.example.com/x"]


def test_without_a_bundle_every_call_is_denied_and_never_runs(support_bot):
    guard = Guard(support_bot, EmbeddedBackend())
    calls = []

    @guard.tool
    def ticket_read(ticket_id: int) -> None:
        calls.append(ticket_id)

    decision = guard.check("ticket_read", {"ticket_id": 1})
    assert decision.effect == "deny" and decision.allow is False
    assert decision.reasons[0].rule == "no-policy-bundle"
    with pytest.raises(PolicyViolationError, match="no-policy-bundle: No policy bundle is active"):
        ticket_read(1)
    assert calls == []


def test_an_engine_error_is_a_deny_that_says_so(support_bot):
    # Two values for one complete rule: a run-time conflict the compiler cannot see.
    conflicting = {
        "warden/decision.rego": "package warden\n\nimport rego.v1\n\n"
        "decision := input.context.a if input.context.a\n\ndecision := input.context.b if input.context.b\n"
    }
    guard = Guard(support_bot, EmbeddedBackend.from_modules(conflicting, {}))
    decision = guard.check("ticket_read", {}, a=ALLOW, b={**ALLOW, "reasons": [{"rule": "x"}]})
    assert decision.effect == "deny"
    assert decision.reasons[0].rule == "engine-error"
    assert "Policy evaluation failed" in decision.reasons[0].message
    assert guard.check("ticket_read", {}, a=ALLOW).allow  # the same policy without the conflict allows


@pytest.mark.parametrize(
    "result",
    [None, [], {"effect": "maybe", "allow": True}, {"effect": "deny", "allow": True}, {"effect": "allow", "allow": "yes"}],
)
def test_anything_but_a_well_formed_decision_is_a_deny(support_bot, result):
    decision = Guard(support_bot, RecordingBackend(result)).check("ticket_read", {})
    assert decision.effect == "deny" and not decision.allow
    assert decision.reasons[0].rule == "malformed-decision"


def test_a_decision_later_than_the_timeout_is_a_deny(support_bot, pack_backend):
    decision = Guard(support_bot, pack_backend, timeout=1e-9).check("ticket_read", {})
    assert decision.effect == "deny"
    assert decision.reasons[0].rule == "decision-timeout"


class SlowOPA(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(1.0)
        body = b'{"result": {"allow": true, "effect": "allow", "reasons": []}}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_an_opa_that_answers_too_late_gives_a_deny_in_time(support_bot):
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowOPA)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        guard = Guard(support_bot, OPAHTTPBackend(f"http://127.0.0.1:{server.server_address[1]}", timeout=0.2))
        started = time.monotonic()
        decision = guard.check("ticket_read", {})
        assert time.monotonic() - started < 0.8
        assert decision.effect == "deny"
        assert decision.reasons[0].rule == "decision-timeout"
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_opa_gives_a_deny(support_bot):
    import socket

    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    decision = Guard(support_bot, OPAHTTPBackend(f"http://127.0.0.1:{port}")).check("ticket_read", {})
    assert decision.effect == "deny"
    assert decision.reasons[0].rule == "engine-unreachable"


def test_with_a_signer_intent_decision_and_result_are_signed_records(support_bot, pack_backend):
    signer = ActionSigner(support_bot)
    guard = Guard(support_bot, pack_backend, signer=signer, session_id="sess-1")

    @guard.tool(summarize=lambda result: f"read {len(result)} bytes")
    def ticket_read(ticket_id: int) -> str:
        return "hello"

    @guard.tool
    def http_request(url: str) -> None:
        raise AssertionError("must not run")

    ticket_read(7)
    with pytest.raises(PolicyViolationError):
        http_request("https://evil.test/")
    records = signer.session_log("sess-1")
    assert [r["kind"] for r in records] == ["intent", "decision", "result", "intent", "decision"]
    assert records[0]["payload"] == {"tool": "ticket_read", "args": {"ticket_id": 7}}
    assert records[1]["payload"] == {"effect": "allow", "reasons": []}
    assert records[2]["payload"] == {"summary": "read 5 bytes", "tool": "ticket_read"}
    assert records[4]["payload"]["effect"] == "deny"
    assert records[4]["payload"]["reasons"][0]["rule"] == "egress-not-allowlisted"
    assert verify_records(records, {support_bot.key_id: support_bot.public_key_b64}).ok


def test_signed_intents_mask_what_the_policy_says_to_mask(support_bot, pack_backend):
    signer = ActionSigner(support_bot)
    guard = Guard(support_bot, pack_backend, signer=signer, session_id="sess-2")
    decision = guard.check("ticket_read", {"note": "card 4111 1111 1111 1111 please"})
    assert "/action/args/note" in decision.obligations["mask"]
    intent = signer.session_log("sess-2")[0]
    assert intent["payload"]["args"] == {"note": "****"}


def test_masked_replaces_values_at_json_pointers_only():
    document = {"action": {"args": {"a/b": "secret", "list": ["x", "y"], "keep": 1}}}
    result = masked(document, ["/action/args/a~1b", "/action/args/list/1", "/missing/x"])
    assert result == {"action": {"args": {"a/b": "****", "list": ["x", "****"], "keep": 1}}}
    assert document["action"]["args"]["a/b"] == "secret"


def test_a_decision_round_trips_through_its_json_shape():
    raw = {"allow": False, "effect": "deny", "reasons": [{"rule": "r", "message": "m", "controls": ["c"]}],
           "obligations": {"log": True, "mask": []}}
    assert Decision.from_result(raw).as_dict() == raw


def test_a_guard_fed_by_a_long_polling_bundle_client_exits_cleanly(tmp_path):
    """The engine compiled for a downloaded bundle is dropped by the thread that made it:
    no ``Engine is unsendable`` at interpreter exit (the refresher is still mid long poll)."""
    import subprocess
    import sys
    import textwrap

    from agents_sdk.tests.conftest import REPO_ROOT

    script = textwrap.dedent(
        """
        from agents_sdk.bundles import BundleClient, VerificationConfig, VerificationKey
        from agents_sdk.guard import EmbeddedBackend, Guard
        from agents_sdk.identity import AgentIdentity
        from agents_sdk.tests.signed_bundles import BundleServer, RSASigner, build_bundle

        signer = RSASigner("k")
        server = BundleServer().__enter__()
        server.state.publish(build_bundle(signer, revision="r1"))
        keys = {"k": VerificationKey.from_pem("k", signer.public_pem)}
        bundles = BundleClient(server.url + "/opa", "bundles/prod", token="env-token", long_polling_timeout=30,
                               verification=VerificationConfig(keys=keys, keyid="k"))
        bot = AgentIdentity.create("support-bot", "a@example.com", ["read:tickets"])
        guard = Guard(bot, EmbeddedBackend(bundles), environment="prod")
        assert bundles.wait_until_ready(10)
        print(guard.check("ticket_read", {"ticket_id": 1}).effect)
        guard.close()
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "allow"
    assert "unsendable" not in done.stderr, done.stderr


def test_a_decision_read_from_a_result_is_the_frozen_dataclass_its_constructor_makes():
    from dataclasses import FrozenInstanceError

    from agents_sdk.guard.decision import Reason

    raw = {"allow": False, "effect": "deny", "obligations": {"log": True},
           "reasons": [{"rule": "r", "message": "m", "controls": ["c", 1]}]}
    read = Decision.from_result(raw, "id-1")
    made = Decision("deny", False, (Reason("r", "m", ("c", "1")),), {"log": True}, "id-1")
    assert read == made and repr(read) == repr(made) and hash(read.reasons) == hash(made.reasons)
    with pytest.raises(FrozenInstanceError):
        read.effect = "allow"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        read.reasons[0].rule = "x"  # type: ignore[misc]
