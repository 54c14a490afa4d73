"""The HTTP witness: every witness line also reaches a collector running as its own process
(`python -m controlplane.audit.witness_collector`), which keeps heads only when signed by the
pinned checkpoint key and refuses a second history; `verify_audit --witness-url` compares the
database with what the collector holds, so a cut tail is named even when the database and the
local witness file were both rewritten.

One collector process serves the module; each test writes to its own log (`/logs/<uuid>`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from io import StringIO
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command
from django.db import connection

from agents_sdk.keys import encode_public_key, key_fingerprint, raw_public_key
from agents_sdk.records import canonical_json
from controlplane.audit import checkpoints, witness, witness_http
from controlplane.audit.models import AuditEvent, CheckpointKey
from tests.audit.commands import verify
from tests.audit.conftest import sign_session

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]
TOKEN = "collector-token-" + uuid.uuid4().hex
SIGNING_KEY = Ed25519PrivateKey.generate()  # the checkpoint key the collector has pinned
PUBLIC_KEY = encode_public_key(SIGNING_KEY.public_key())


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    """The collector as a second process on a free port, with the checkpoint key pinned."""
    store = tmp_path_factory.mktemp("collector")
    token_file = store.parent / f"{store.name}-token"
    token_file.write_text(TOKEN)
    # As docs/audit.md ("An HTTP witness") starts it.
    process = subprocess.Popen(
        [sys.executable, "-m", "controlplane.audit.witness_collector", "--listen", "127.0.0.1:0",
         "--store", str(store), "--token-file", str(token_file), "--public-key", PUBLIC_KEY],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("listening on "), first
        yield f"http://{first.split()[-1]}", store
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def log_url(collector, settings):
    """This test's own log on the collector, configured as the HTTP witness; heads are signed
    with the key the collector pinned."""
    base, _ = collector
    url = f"{base}/logs/{uuid.uuid4().hex}"
    settings.WARDEN_AUDIT_WITNESS_URL = url
    settings.WARDEN_AUDIT_WITNESS_TOKEN = TOKEN
    settings.WARDEN_AUDIT_CHECKPOINT_PUBLIC_KEYS = (PUBLIC_KEY,)
    CheckpointKey.objects.update(is_active=False)
    CheckpointKey.objects.create(
        key_id=key_fingerprint(raw_public_key(SIGNING_KEY.public_key())), public_key=PUBLIC_KEY,
        encrypted_private_key=checkpoints.secrets_at_rest().encrypt(SIGNING_KEY.private_bytes_raw()),
    )
    return url


def checkpoint(capture):
    with capture(execute=True):
        return checkpoints.create_checkpoints()


def post_raw(url: str, entry: dict, token: str | None = TOKEN) -> int:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(f"{url}/entries", data=canonical_json(entry), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_heads_and_batches_reach_the_collector_and_verify_audit_compares_them(
        log_url, ship, signer, django_capture_on_commit_callbacks):
    ship(sign_session(signer, "s1"))
    made = checkpoint(django_capture_on_commit_callbacks)
    held = witness_http.fetch(log_url)
    assert [line["type"] for line in held] == ["batch", "checkpoint"]
    assert held[1]["statement_hash"] == made[-1].statement_hash and held[1]["statement"] == made[-1].statement
    assert held[0]["events"] == witness.read()[0][0]["events"]
    output, ok = verify("--witness", os.devnull)
    assert ok, output
    assert "2 witness entries" in output  # read from the collector alone


def test_a_cut_tail_is_named_from_the_collector_when_the_local_file_was_rewritten_too(
        log_url, ship, signer, django_capture_on_commit_callbacks, audit_witness):
    ship(sign_session(signer, "s1"))
    checkpoint(django_capture_on_commit_callbacks)
    ship(sign_session(signer, "s2"))
    second, = checkpoint(django_capture_on_commit_callbacks)
    # Someone past every trigger cuts the tail, and rewrites the local witness to match.
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("DELETE FROM audit_checkpoint WHERE sequence = %s", [second.sequence])
        cursor.execute("DELETE FROM audit_auditevent WHERE id >= %s", [second.first_event_id])
        cursor.execute("SET session_replication_role = origin")
    Path(audit_witness).write_text("")
    output, ok = verify("--witness-url", "")
    assert ok, output  # the database and the rewritten file agree with each other
    output, ok = verify()
    assert not ok
    assert f"TRUNCATED: the log's tail was cut: the witness holds checkpoint(s) {second.sequence}…" in output
    assert "were stored (the witness recorded them) but are gone" in output


def test_the_collector_keeps_only_heads_signed_with_the_pinned_key_and_never_a_second_history(
        log_url, ship, signer, django_capture_on_commit_callbacks):
    ship(sign_session(signer, "s1"))
    made, = checkpoint(django_capture_on_commit_callbacks)
    genuine = witness_http.fetch(log_url)[-1]
    assert post_raw(log_url, genuine) == 200  # a resend is idempotent
    assert post_raw(log_url, genuine, token=None) == 401
    assert post_raw(log_url, genuine, token="guessed") == 401
    # A rewritten checkpoint 1 signed with the real key: refused as a second history (and kept aside).
    statement = {**made.statement, "merkle_root": "00" * 32}
    body = canonical_json(statement)
    rewritten = {**genuine, "statement": statement, "merkle_root": statement["merkle_root"],
                 "statement_hash": hashlib.sha256(body).hexdigest(),
                 "signature": base64.b64encode(SIGNING_KEY.sign(body)).decode()}
    assert post_raw(log_url, rewritten) == 409
    # A head signed with any other key, or whose hash or fields do not match its statement.
    other = Ed25519PrivateKey.generate()
    forged = {**rewritten, "sequence": 2, "statement": {**statement, "sequence": 2}}
    forged_body = canonical_json(forged["statement"])
    forged.update(statement_hash=hashlib.sha256(forged_body).hexdigest(),
                  signature=base64.b64encode(other.sign(forged_body)).decode())
    assert post_raw(log_url, forged) == 403
    assert post_raw(log_url, {**genuine, "sequence": 2}) == 400
    assert post_raw(log_url, {**genuine, "statement_hash": "0" * 64}) == 400
    assert post_raw(log_url, {"format": "warden-audit-witness/1", "type": "batch", "batch_id": 1, "events": "x"}) == 400
    assert witness_http.fetch(log_url)[-1] == genuine and len(witness_http.fetch(log_url)) == 2


def test_a_collector_that_was_down_gets_the_heads_it_missed_at_the_next_checkpoint(
        log_url, ship, signer, settings, django_capture_on_commit_callbacks, caplog, monkeypatch):
    monkeypatch.setattr(witness_http, "BACKOFF", 0.01)  # the retries, without their waits
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}/logs/x"
    settings.WARDEN_AUDIT_WITNESS_URL = down
    ship(sign_session(signer, "s1"))  # its batch line is tried ATTEMPTS times, then an alert
    ship(sign_session(signer, "s1b"))  # right after a failure: not tried, no worker waits on it
    first, = checkpoint(django_capture_on_commit_callbacks)  # a head is always tried
    alert = "ALERT the HTTP audit witness (WARDEN_AUDIT_WITNESS_URL) could not be written"
    assert caplog.text.count(alert) == 2
    assert f"after {witness_http.ATTEMPTS} attempts" in caplog.text
    assert AuditEvent.objects.count() == 8  # the log itself is committed
    output, ok = verify("--witness-url", down)
    assert not ok and "WITNESS: the HTTP witness could not be read" in output
    # Back up: the next checkpoint sends the head the collector missed first.
    settings.WARDEN_AUDIT_WITNESS_URL = log_url
    ship(sign_session(signer, "s2"))
    second, = checkpoint(django_capture_on_commit_callbacks)
    heads = [line for line in witness_http.fetch(log_url) if line["type"] == "checkpoint"]
    assert [h["sequence"] for h in heads] == [first.sequence, second.sequence]
    output, ok = verify()
    assert ok, output


def test_the_collector_continues_a_log_a_previous_run_kept(collector):
    _, store = collector
    line = {"format": "warden-audit-witness/1", "type": "batch", "batch_id": 7, "events": [[1, 4]]}
    name = uuid.uuid4().hex
    (store / f"{name}.jsonl").write_bytes(canonical_json(line) + b"\n")  # as a previous run left it
    url = f"{collector[0]}/logs/{name}"
    assert witness_http.fetch(url) == [line]
    assert post_raw(url, line) == 200  # held already: not stored twice
    assert json.loads((store / f"{name}.jsonl").read_text().splitlines()[0]) == line
