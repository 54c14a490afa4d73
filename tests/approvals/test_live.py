"""End to end against one live control plane per module (uvicorn over the test database).

- A real agent process makes a held payment and waits; a person approves it; the payment
  runs exactly once; replays of the grant are refused on the same host (ledger) and on
  another (engine: consumed); the audit log holds every step, verified.
- An agent deciding through `warden sidecar` waits the same way: the grant reaches it in
  the sidecar's next bundle; a denial reaches it as ApprovalDenied.

The console click, LangChain and the MCP proxy are covered by frontend/e2e/approvals.spec.ts
(real Chromium, the same agent process).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from django.db import transaction

from agents_sdk.approvals import ApprovalClient
from agents_sdk.bundles import VerificationConfig, VerificationKey
from agents_sdk.errors import ApprovalDenied, PolicyViolationError
from agents_sdk.guard import Guard, OPAHTTPBackend
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from agents_sdk.sidecar import Sidecar, parse_config
from controlplane.accounts import services as account_services
from controlplane.approvals import services as approval_services
from controlplane.approvals.models import ApprovalRequest, ApprovalState
from controlplane.audit.models import AuditEvent, QuarantinedRecord
from controlplane.bundles import services as bundle_services
from controlplane.bundles.signing import active_signing_key
from controlplane.changelog.models import ChangeAction
from controlplane.opa.authentication import forget_cached_tokens
from controlplane.opa.database import close_db_connections
from controlplane.opa.selectors import forget_cached_bundles
from controlplane.policies import services as policy_services
from tests.accounts.factories import UserFactory
from tests.sdk.conftest import LiveControlPlane, admin, api_token  # noqa: F401 - fixtures

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]
IBAN = "DE89370400440532013000"


@pytest.fixture(scope="module")
def shared_control_plane(django_db_setup, django_db_blocker):
    """One server for the module: each test still gets a clean database (transactional)."""
    with django_db_blocker.unblock():
        live = LiveControlPlane().start()
        yield live
        live.stop()
        close_db_connections()


@pytest.fixture
def control_plane(shared_control_plane, transactional_db):
    forget_cached_tokens()
    forget_cached_bundles()
    yield shared_control_plane
    close_db_connections()  # the server's threads hold no connection over the flush
    forget_cached_tokens()
    forget_cached_bundles()


@pytest.fixture
def prod(admin):  # noqa: F811
    policy_services.create_tool(name="payment_create", scopes=["write:payments"], category="payment", by=admin)
    environment = bundle_services.create_environment(name="prod", by=admin)
    # publish_policies without re-running the library's Rego tests (their own suite runs them).
    with transaction.atomic():
        bundle = bundle_services.build_bundle(environment, policy_files=bundle_services.current_policy_files(),
                                              by=admin, reason="published")
        bundle_services.activate_bundle(environment, bundle, by=admin, action=ChangeAction.ACTIVATE)
    return environment


@pytest.fixture
def approver():
    return UserFactory(username="bob", email="bob@example.com", roles=["approver"])


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_held_payment_is_approved_runs_once_and_cannot_be_replayed(control_plane, api_token, prod, approver,  # noqa: F811
                                                                    tmp_path):
    _, approver_token = account_services.create_token(user=approver, name="t", by=approver)
    (tmp_path / "admin.token").write_text(api_token)
    agent = subprocess.Popen(
        [sys.executable, str(REPO / "tests/approvals/agent_process.py"), "--url", control_plane.url,
         "--admin-token-file", str(tmp_path / "admin.token"), "--workdir", str(tmp_path / "agent"), "--mode", "guard",
         "--replay", "--timeout", "90"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin"},
    )
    try:
        def filed():
            if agent.poll() is not None:
                raise AssertionError(f"the agent exited: {agent.stdout.read()} {agent.stderr.read()}")
            return ApprovalRequest.objects.filter(state=ApprovalState.PENDING).first()

        request = wait_for(filed, 90, "the held payment's approval request")
        assert request.tool == "payment_create" and request.masked_args["iban"] == IBAN
        answer = httpx.post(f"{control_plane.url}/api/v1/approvals/{request.pk}/approve/", json={"comment": "ok"},
                            headers={"Authorization": f"Token {approver_token}"}, timeout=30)
        assert answer.status_code == 200, answer.text
        out, err = agent.communicate(timeout=120)
    finally:
        agent.kill()
    assert agent.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events if e["event"] in ("ran", "refused")] == ["ran"], err
    assert len((tmp_path / "agent/payments.log").read_text().splitlines()) == 1
    replays = [(e["where"], e["outcome"]) for e in events if e["event"] == "replay"]
    assert replays == [("same-host", "refused"), ("other-host", "refused")]
    assert all("consumed" in e["error"] for e in events if e["event"] == "replay")

    request.refresh_from_db()
    assert request.state == ApprovalState.APPROVED and request.consumed_at is not None
    session = next(e["session_id"] for e in events if e["event"] == "ready")
    stored = wait_for(lambda: list(AuditEvent.objects.filter(session_id=session).order_by("seq")) or None, 30,
                      "the audit events")
    kinds = [f"{e.kind}:{e.payload.get('event') or e.effect}" if e.kind in ("approval", "decision") else e.kind
             for e in stored]
    held = kinds.index("decision:require_approval")
    assert kinds[held - 1:held + 7] == [
        "intent", "decision:require_approval", "approval:requested", "approval:approved",
        "intent", "decision:allow", "approval:consumed", "result",
    ]
    assert "approval:refused" in kinds
    assert not QuarantinedRecord.objects.exists()


def sidecar_for(control_plane, prod, admin, tmp_path) -> tuple[Sidecar, VerificationConfig]:  # noqa: F811
    """`warden sidecar` pulling prod's bundles from the control plane (OPA's config format)."""
    _, token = bundle_services.create_environment_token(prod, name="sidecar", by=admin)
    key = active_signing_key()
    config = parse_config({
        "services": {"warden": {"url": f"{control_plane.url}/opa", "credentials": {"bearer": {"token": token}}}},
        "keys": {key.kid: {"algorithm": "RS256", "key": key.public_key_pem}},
        "bundles": {"prod": {"service": "warden", "resource": "bundles/prod", "signing": {"keyid": key.kid},
                             "polling": {"long_polling_timeout_seconds": 20}}},
        "persistence_directory": str(tmp_path / "sidecar"),
    })
    verification = VerificationConfig(keys={key.kid: VerificationKey.from_pem(key.kid, key.public_key_pem)},
                                      keyid=key.kid)
    return Sidecar(config, addr="127.0.0.1:0").start(), verification


def test_an_agent_waiting_through_the_sidecar_runs_once_approved_and_learns_a_denial(
    control_plane, admin, api_token, prod, approver, tmp_path  # noqa: F811
):
    identity = AgentIdentity.create("pay-bot", "treasury@example.com", ["write:payments"])
    identity.register(control_plane.url, api_token, environments=["prod"])
    sidecar, verification = sidecar_for(control_plane, prod, admin, tmp_path)
    try:
        assert sidecar.bundles.wait_until_ready(20)
        approvals = ApprovalClient(identity, control_plane.url, spool_dir=tmp_path / "spool",
                                   ledger_dir=tmp_path / "ledger", verification=verification)
        guard = Guard(identity, OPAHTTPBackend(sidecar.url), environment="prod", session_id="s-1",
                      signer=ActionSigner(identity), approvals=approvals, on_approval="wait", approval_timeout=30)
        ran: list[int] = []

        @guard.tool(name="payment_create")
        def payment_create(amount: int, currency: str, iban: str) -> str:
            ran.append(amount)
            return "paid"

        def decide(amount: int, verdict) -> object:
            outcome: list = []
            agent = threading.Thread(target=lambda: outcome.append(_called(payment_create, amount)))
            agent.start()
            request = wait_for(lambda: ApprovalRequest.objects.filter(state=ApprovalState.PENDING).first(), 20,
                               f"the request for {amount}")
            verdict(request, by=approver, comment="checked")
            agent.join(30)
            assert not agent.is_alive(), "the agent is still waiting"
            return outcome[0]

        assert decide(1200, approval_services.approve) == "paid"
        assert ran == [1200]
        denied = decide(1300, approval_services.deny)
        assert isinstance(denied, ApprovalDenied) and denied.comment == "checked" and ran == [1200]

        # The grant once more, as a replay on this host: the ledger refuses it.
        grant_id = ApprovalRequest.objects.get(state=ApprovalState.APPROVED).grant_id
        with guard.context(approval_token=grant_id), pytest.raises(PolicyViolationError, match="consumed"):
            payment_create(1200, "EUR", IBAN)
        assert ran == [1200]
        guard.close()
    finally:
        sidecar.stop()


def _called(function, amount: int):
    try:
        return function(amount, "EUR", IBAN)
    except Exception as exc:  # noqa: BLE001 - the test thread inspects what the agent got
        return exc
