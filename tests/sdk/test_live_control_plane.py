"""The SDK against a live control plane: registration, signed bundles over OPA's protocol,
the kill switch through long polling, fail-closed, persistence, and the sidecar."""

from __future__ import annotations

import http.client
import time

import httpx
import pytest

from agents_sdk.bundles import BundleClient, BundleError, BundleVerificationError, VerificationConfig, VerificationKey
from agents_sdk.errors import PolicyViolationError
from agents_sdk.guard import EmbeddedBackend, Guard, OPAHTTPBackend
from agents_sdk.identity import AgentIdentity
from agents_sdk.sidecar import Sidecar, parse_config
from agents_sdk.tests.signed_bundles import RSASigner
from controlplane.bundles import services as bundle_services
from controlplane.identity import services as identity_services
from controlplane.identity.models import Agent
from controlplane.opa.models import DecisionLog

pytestmark = pytest.mark.django_db(transaction=True)


def signing_key(control_plane, api_token) -> tuple[str, str]:
    """The active bundle signing key as engines get it: GET /api/v1/signing-keys/."""
    answer = httpx.get(f"{control_plane.url}/api/v1/signing-keys/", headers={"Authorization": f"Token {api_token}"})
    answer.raise_for_status()
    body = answer.json()
    keys = body["results"] if isinstance(body, dict) else body
    (key,) = [k for k in keys if k["is_active"]]
    return key["kid"], key["public_key_pem"]


def registered_bot(control_plane, api_token) -> AgentIdentity:
    identity = AgentIdentity.create("support-bot", "alice@example.com", ["read:tickets", "write:files"])
    registration = identity.register(control_plane.url, api_token, environments=["prod"])
    assert registration.key_id == identity.key_id
    return identity


def bundle_client(control_plane, prod, kid, pem, **kwargs) -> BundleClient:
    verification = VerificationConfig(keys={kid: VerificationKey.from_pem(kid, pem)}, keyid=kid)
    return BundleClient(f"{control_plane.url}/opa", f"bundles/{prod.name}", token=prod.token,
                        verification=verification, **kwargs)


def published(prod, admin):
    bundle_services.publish_policies(prod, by=admin)
    prod.refresh_from_db()
    return prod


def test_a_registered_agent_is_allowed_by_the_signed_bundle_it_pulls(control_plane, admin, api_token, prod):
    bot = registered_bot(control_plane, api_token)
    agent = Agent.objects.get(name="support-bot")
    assert agent.keys.get().key_id == bot.key_id  # only the public key went to the control plane
    published(prod, admin)
    kid, pem = signing_key(control_plane, api_token)

    client = bundle_client(control_plane, prod, kid, pem)
    assert client.poll_once() is True
    bundle = client.active
    assert bundle.signed_by == kid
    assert bundle.revision == prod.active_bundle.revision
    assert bundle.data["warden_registry"]["agents"]["support-bot"]["status"] == "active"
    assert client.poll_once() is False  # conditional GET: 304

    guard = Guard(bot, EmbeddedBackend(client, start=False), environment="prod")
    assert guard.check("ticket_read", {"id": 1}).allow
    decision = guard.check("http_request", {"url": "https://evil.test/"})
    assert decision.effect == "deny" and decision.reasons[0].rule in {"missing-scope", "egress-not-allowlisted"}

    # A key other than the control plane's refuses the same bundle.
    impostor = bundle_client(control_plane, prod, kid, RSASigner().public_pem)
    with pytest.raises(BundleVerificationError, match="does not verify"):
        impostor.poll_once()


def test_suspended_agent_is_denied_after_next_bundle_activation(control_plane, admin, api_token, prod):
    bot = registered_bot(control_plane, api_token)
    published(prod, admin)
    kid, pem = signing_key(control_plane, api_token)
    backend = EmbeddedBackend(bundle_client(control_plane, prod, kid, pem, long_polling_timeout=20))
    guard = Guard(bot, backend, environment="prod")
    try:
        assert backend.wait_until_ready(10)
        assert guard.check("ticket_read", {"id": 1}).allow
        time.sleep(0.3)  # the client is held in a long poll now

        clicked = time.monotonic()
        identity_services.suspend_agent(Agent.objects.get(name="support-bot"), by=admin, reason="test")
        decision = guard.check("ticket_read", {"id": 1})
        while decision.allow and time.monotonic() - clicked < 5:
            time.sleep(0.01)
            decision = guard.check("ticket_read", {"id": 1})
        waited = time.monotonic() - clicked
        assert decision.effect == "deny"
        assert "agent-not-active" in [r.rule for r in decision.reasons]
        assert waited < 2.0, f"denied only {waited:.2f} s after the suspension"
    finally:
        backend.close()


def test_with_no_bundle_the_guard_fails_closed(control_plane, admin, api_token, prod):
    bot = registered_bot(control_plane, api_token)  # prod has no bundle yet: nothing published
    client = bundle_client(control_plane, prod, "any-key", RSASigner().public_pem)
    guard = Guard(bot, EmbeddedBackend(client, start=False))

    @guard.tool
    def ticket_read(ticket_id: int) -> None:
        raise AssertionError("must not run")

    with pytest.raises(BundleError) as caught:
        client.poll_once()
    assert caught.value.http_code == 404
    with pytest.raises(PolicyViolationError, match="no-policy-bundle"):
        ticket_read(1)


def test_the_persisted_bundle_is_used_when_the_control_plane_is_unreachable(control_plane, admin, api_token, prod, tmp_path):
    bot = registered_bot(control_plane, api_token)
    published(prod, admin)
    kid, pem = signing_key(control_plane, api_token)
    bundle_client(control_plane, prod, kid, pem, persist_dir=tmp_path).poll_once()
    revision = prod.active_bundle.revision
    control_plane.stop()

    offline = bundle_client(control_plane, prod, kid, pem, persist_dir=tmp_path, min_delay=0.1, max_delay=0.2)
    backend = EmbeddedBackend(offline)
    try:
        assert backend.wait_until_ready(2)
        assert offline.status().source == "persisted" and backend.revision == revision
        assert Guard(bot, backend).check("ticket_read", {"id": 1}).allow
        deadline = time.monotonic() + 3
        while not offline.status().code and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "cannot reach the bundle service" in offline.status().message
    finally:
        backend.close()


def test_the_sidecar_answers_as_the_embedded_engine_and_logs_to_the_control_plane(
    control_plane, admin, api_token, prod, tmp_path
):
    bot = registered_bot(control_plane, api_token)
    published(prod, admin)
    kid, pem = signing_key(control_plane, api_token)
    # One config for a real OPA and for `warden sidecar` (docs/sdk.md).
    config = parse_config({
        "services": {"warden": {"url": f"{control_plane.url}/opa", "credentials": {"bearer": {"token": prod.token}}}},
        "labels": {"app": "support"},
        "keys": {kid: {"algorithm": "RS256", "key": pem}},
        "bundles": {"prod": {"service": "warden", "resource": "bundles/prod", "signing": {"keyid": kid},
                             "polling": {"long_polling_timeout_seconds": 20}}},
        "decision_logs": {"service": "warden", "reporting": {"min_delay_seconds": 60, "max_delay_seconds": 60}},
        "status": {"service": "warden"},
        "persistence_directory": str(tmp_path),
    })
    sidecar = Sidecar(config, addr="127.0.0.1:0").start()
    embedded = EmbeddedBackend(bundle_client(control_plane, prod, kid, pem), start=False)
    embedded.bundles.poll_once()
    try:
        assert sidecar.bundles.wait_until_ready(10)
        examples = [
            ("file_delete", {"path": "/prod/x"}),  # DESIGN.md's example: held for approval
            ("ticket_read", {"id": 1}),
            ("http_request", {"url": "https://evil.test/"}),
            ("unregistered_tool", {}),
            ("ticket_read", {"note": "card 4111 1111 1111 1111"}),
        ]
        remote = Guard(bot, OPAHTTPBackend(sidecar.url), environment="prod", session_id="s-1")
        local = Guard(bot, embedded, environment="prod", session_id="s-1")
        effects = set()
        for tool, args in examples:
            moment = "2026-01-01T00:00:00Z"
            a, b = local.check(tool, args, time=moment), remote.check(tool, args, time=moment)
            assert (a.effect, a.reasons, a.obligations) == (b.effect, b.reasons, b.obligations)
            effects.add(a.effect)
        assert effects == {"allow", "deny", "require_approval"}

        assert sidecar.decision_logs.flush()
        control_plane.wait_for_uploads()  # stored off the request path (controlplane.opa.uploads)
        stored = DecisionLog.objects.filter(environment=prod)
        assert stored.count() == len(examples)
        assert {row.instance_id for row in stored} == {sidecar.instance_id}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not prod.opa_instances.filter(active_revision=embedded.revision).exists():
            time.sleep(0.05)
        assert prod.opa_instances.get().active_revision == embedded.revision
        connection = http.client.HTTPConnection(*sidecar.address, timeout=5)
        connection.request("GET", "/health?bundles")
        assert connection.getresponse().status == 200
    finally:
        sidecar.stop()
