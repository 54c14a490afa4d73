"""The SDK's side of human approval, without a control plane: the documented example, grant
binding and offline verification, the ledger's single use across processes, and the spool
when the control plane is unreachable (the call does not run)."""

from __future__ import annotations

import base64
import json
import multiprocessing
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from agents_sdk.approvals import ApprovalClient, ApprovalUnreachable, GrantLedger, args_sha256, read_grant
from agents_sdk.bundles import VerificationConfig, VerificationKey
from agents_sdk.errors import ApprovalRequired
from agents_sdk.guard import EmbeddedBackend, Guard
from agents_sdk.identity import AgentIdentity

DOC = Path(__file__).resolve().parents[2] / "docs" / "approvals.md"
REGO = Path(__file__).resolve().parents[2] / "rego" / "warden"


def test_the_documented_example_runs():
    (block,) = re.findall(r"```python\n(.*?)\n```", DOC.read_text(), re.S)
    exec(compile(block, str(DOC), "exec"), {})


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_grant_verifies_only_with_the_control_planes_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = _b64(json.dumps({"alg": "RS256", "kid": "k1"}).encode())
    claims = _b64(json.dumps({"jti": "g", "agent": "a"}).encode())
    signature = _b64(key.sign(f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()))
    config = VerificationConfig(keys={"k1": VerificationKey.from_pem("k1", pem)})
    assert read_grant(f"{header}.{claims}.{signature}", config)["agent"] == "a"
    forged = _b64(json.dumps({"jti": "g", "agent": "evil"}).encode())
    with pytest.raises(ValueError, match="does not verify"):
        read_grant(f"{header}.{forged}.{signature}", config)
    with pytest.raises(ValueError, match="not a compact JWS"):
        read_grant("nonsense", config)


def _consume(directory: str, start, results) -> None:
    start.wait()
    results.put(GrantLedger(directory).consume("grant-race"))


def test_two_processes_cannot_both_use_one_grant(tmp_path):
    start = multiprocessing.Event()
    results: multiprocessing.Queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_consume, args=(str(tmp_path), start, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(10)
    outcomes = sorted(results.get(timeout=5) for _ in workers)
    assert outcomes == [False, False, False, True]


def held_guard(tmp_path, on_approval: str) -> tuple[Guard, list]:
    from agents_sdk.engine import load_modules

    modules = {p: s for p, s in load_modules(str(REGO)).items() if not p.endswith("_test.rego")}
    data = {"warden_registry": {
        "environment": "prod",
        "agents": {"pay-bot": {"status": "active", "scopes": ["payments:create"]}},
        "tools": {"payment_create": {"scopes": ["payments:create"], "category": "payment"}},
    }}
    identity = AgentIdentity.create("pay-bot", "alice@example.com", ["payments:create"])
    # Port 9 (discard): nothing listens, so the control plane is unreachable.
    client = ApprovalClient(identity, "http://127.0.0.1:9", spool_dir=tmp_path / "spool", timeout=0.5)
    guard = Guard(identity, EmbeddedBackend.from_modules(modules, data), environment="prod", session_id="s-1",
                  approvals=client, on_approval=on_approval, approval_timeout=1)
    ran: list = []
    return guard, ran


@pytest.mark.parametrize("on_approval", ["raise", "wait"])
def test_an_unreachable_control_plane_spools_the_request_and_the_call_does_not_run(tmp_path, on_approval):
    guard, ran = held_guard(tmp_path, on_approval)

    @guard.tool
    def payment_create(amount: int) -> None:
        ran.append(amount)

    for _ in range(2):
        with pytest.raises(ApprovalUnreachable, match="unreachable") as caught:
            payment_create(1200)
        assert isinstance(caught.value, ApprovalRequired) and caught.value.request_id is None
    assert ran == []
    assert guard.approvals.spooled() == 1  # the same held action: one spooled request
    (spooled,) = (tmp_path / "spool").glob("*.request.json")
    body = json.loads(spooled.read_text())
    assert body["tool"] == "payment_create" and body["args_sha256"] == args_sha256({"amount": 1200})
    assert body["reasons"][0]["rule"] == "payment-requires-approval"


def test_on_approval_must_be_raise_or_wait(tmp_path):
    guard, _ = held_guard(tmp_path, "raise")
    with pytest.raises(ValueError, match="on_approval"):
        Guard(guard.identity, guard.backend, on_approval="sometimes")
