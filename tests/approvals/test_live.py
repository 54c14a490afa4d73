"""End to end against a live control plane (uvicorn over the test database): a real agent
process makes a held payment and waits; a person approves it; the payment runs exactly
once; replays of the grant are refused on the same host (ledger) and on another (engine:
consumed); the audit log holds every step, verified. The same through LangChain when its
environment is installed (nox -s integration-langchain). The console click is covered by
frontend/e2e/approvals.spec.ts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from controlplane.accounts import services as account_services
from controlplane.approvals.models import ApprovalRequest, ApprovalState
from controlplane.audit.models import AuditEvent, QuarantinedRecord
from controlplane.bundles import services as bundle_services
from controlplane.policies import services as policy_services
from tests.accounts.factories import UserFactory
from tests.sdk.conftest import admin, api_token, control_plane  # noqa: F401 - fixtures

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]
PYTHONS = {"guard": Path(sys.executable), "langchain": REPO / ".nox/integration-langchain/bin/python"}


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("mode", ["guard", "langchain"])
def test_held_payment_is_approved_runs_once_and_cannot_be_replayed(control_plane, admin, api_token, tmp_path,  # noqa: F811
                                                                    mode):
    if not PYTHONS[mode].exists():
        pytest.skip(f"{PYTHONS[mode]} missing (nox -s integration-{mode})")
    policy_services.create_tool(name="payment_create", scopes=["write:payments"], category="payment", by=admin)
    prod = bundle_services.create_environment(name="prod", by=admin)
    bundle_services.publish_policies(prod, by=admin)
    approver = UserFactory(username="bob", email="bob@example.com", roles=["approver"])
    _, approver_token = account_services.create_token(user=approver, name="t", by=approver)
    (tmp_path / "admin.token").write_text(api_token)
    agent = subprocess.Popen(
        [str(PYTHONS[mode]), str(REPO / "tests/approvals/agent_process.py"), "--url", control_plane.url,
         "--admin-token-file", str(tmp_path / "admin.token"), "--workdir", str(tmp_path / "agent"), "--mode", mode,
         "--replay", "--timeout", "90"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin"},
    )
    try:
        def filed():
            if agent.poll() is not None:
                raise AssertionError(f"the agent exited: {agent.stdout.read()} {agent.stderr.read()}")
            return ApprovalRequest.objects.filter(state=ApprovalState.PENDING).first()

        request = wait_for(filed, 90, "the held payment's approval request")
        assert request.tool == "payment_create" and request.masked_args["iban"] == "DE89370400440532013000"
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
