"""The shipper against a stdlib HTTP server playing the control plane's batch endpoint."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agents_sdk.records import ActionSigner
from agents_sdk.shipper import Shipper, ShipperFull
from agents_sdk.verify import verify_records


class Endpoint:
    """Checks each upload's signature like the control plane; answers from `statuses` first, then 202."""

    def __init__(self, identity) -> None:
        self.identity = identity
        self.statuses: list[int] = []
        self.batches: list[list[dict]] = []
        self.attempts = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                endpoint.attempts += 1
                message = f"{self.headers['X-Warden-Timestamp']}\n{hashlib.sha256(body).hexdigest()}".encode()
                key = Ed25519PublicKey.from_public_bytes(base64.b64decode(endpoint.identity.public_key_b64))
                key.verify(base64.b64decode(self.headers["X-Warden-Signature"]), message)
                assert self.headers["X-Warden-Key-Id"] == endpoint.identity.key_id
                status = endpoint.statuses.pop(0) if endpoint.statuses else 202
                if status == 202:
                    if self.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    endpoint.batches.append(json.loads(body)["records"])
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def records(self) -> list[dict]:
        return [r for batch in self.batches for r in batch]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint(identity):
    server = Endpoint(identity)
    yield server
    server.close()


def sign(identity, sink, count: int, session_id: str = "s1") -> list[dict]:
    signer = ActionSigner(identity, sink=sink)
    with signer.session(session_id=session_id) as session:
        for n in range(count):
            session.result(f"step {n}")
    return signer.session_log()


def test_records_are_delivered_signed_in_order_and_the_spool_emptied(identity, endpoint, tmp_path):
    shipper = Shipper(identity, endpoint.url, tmp_path, batch_size=10, flush_interval=0.05).start()
    records = sign(identity, shipper.submit, 25)
    assert shipper.close(timeout=10)
    assert endpoint.records == records
    assert [len(b) for b in endpoint.batches] == [10, 10, 5]
    assert verify_records(endpoint.records, {identity.key_id: identity.public_key_b64}).ok
    assert list(tmp_path.iterdir()) == []
    assert shipper.stats()["sent"] == 25


def test_outage_is_retried_with_backoff_and_nothing_is_lost(identity, endpoint, tmp_path):
    endpoint.statuses = [503, 503, 500]
    shipper = Shipper(identity, endpoint.url, tmp_path, batch_size=5, flush_interval=0.05,
                      backoff_initial=0.01, backoff_max=0.05).start()
    records = sign(identity, shipper.submit, 12)
    assert shipper.close(timeout=10)
    assert endpoint.records == records
    assert shipper.stats()["failures"] == 3


def test_unreachable_control_plane_keeps_records_spooled(identity, tmp_path):
    shipper = Shipper(identity, "http://127.0.0.1:9", tmp_path, batch_size=5, backoff_initial=0.01, timeout=1)
    sign(identity, shipper.submit, 7)
    assert not shipper.flush(timeout=0.3)
    assert shipper.stats()["failures"] >= 1 and "cannot reach" in shipper.stats()["last_error"]
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".ready", ".ready"]


def test_a_restart_resends_what_a_crashed_process_left(identity, endpoint, tmp_path):
    crashed = Shipper(identity, endpoint.url, tmp_path, batch_size=4)
    records = sign(identity, crashed.submit, 6)  # never started, never closed: the process died
    (tmp_path / "000000000099.open").write_bytes(b'{"half": "a line cut by the cra')  # torn last write
    restarted = Shipper(identity, endpoint.url, tmp_path).start()
    assert restarted.close(timeout=10)
    assert endpoint.records == records


def test_full_spool_refuses_and_counts(identity, tmp_path):
    shipper = Shipper(identity, "http://127.0.0.1:9", tmp_path, max_spool_bytes=2000)
    sign(identity, shipper.submit, 20)
    stats = shipper.stats()
    assert stats["refused"] > 0 and stats["spooled"] + stats["refused"] == 20
    assert stats["spool_bytes"] <= 2000
    strict = Shipper(identity, "http://127.0.0.1:9", tmp_path / "b", max_spool_bytes=10, raise_when_full=True)
    with pytest.raises(ShipperFull):
        sign(identity, strict.submit, 1)


def test_a_batch_refused_as_malformed_is_set_aside_and_shipping_goes_on(identity, endpoint, tmp_path):
    endpoint.statuses = [400]
    shipper = Shipper(identity, endpoint.url, tmp_path, batch_size=3, flush_interval=0.05).start()
    records = sign(identity, shipper.submit, 6)
    assert shipper.close(timeout=10)
    assert endpoint.records == records[3:]
    assert shipper.stats()["rejected"] == 3
    assert [p.suffix for p in tmp_path.iterdir()] == [".rejected"]


def test_a_batch_too_large_for_the_server_is_split(identity, endpoint, tmp_path):
    endpoint.statuses = [413]
    shipper = Shipper(identity, endpoint.url, tmp_path, batch_size=8, flush_interval=0.05).start()
    records = sign(identity, shipper.submit, 8)
    assert shipper.close(timeout=10)
    assert endpoint.records == records
    assert [len(b) for b in endpoint.batches] == [4, 4]


def test_fsync_always_and_bad_policy(identity, endpoint, tmp_path):
    with pytest.raises(ValueError):
        Shipper(identity, endpoint.url, tmp_path, fsync="sometimes")
    shipper = Shipper(identity, endpoint.url, tmp_path, fsync="always").start()
    records = sign(identity, shipper.submit, 3)
    assert shipper.close(timeout=10) and endpoint.records == records
