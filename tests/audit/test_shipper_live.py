"""A live shipper (agents_sdk.shipper) delivers spooled records after an outage to the
real control plane (Django's live server), and a restarted shipper re-sends what a
crashed one left; the control plane stores each record once."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from agents_sdk.shipper import Shipper
from controlplane.audit import verification
from controlplane.audit.models import AuditEvent, QuarantinedRecord
from tests.audit.conftest import register, route_verifications



def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_proxy(port: int, target: str) -> ThreadingHTTPServer:
    """The control plane's front door coming back after the outage: forwards to the live server."""

    class Forward(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            request = urllib.request.Request(target + self.path, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, answer = response.status, response.read()
            except urllib.error.HTTPError as exc:
                status, answer = exc.code, exc.read()
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Forward)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_live_shipper_delivers_spooled_records_after_an_outage_and_a_crash(live_server, tmp_path, monkeypatch):
    route_verifications(monkeypatch, verification.verify_batch)
    identity = AgentIdentity.create("billing-bot", "payments@example.com")
    register(identity)
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    # The control plane is unreachable: records are spooled, retried, kept.
    first = Shipper(identity, url, tmp_path, batch_size=50, flush_interval=0.05,
                    backoff_initial=0.05, backoff_max=0.2, timeout=2).start()
    signer = ActionSigner(identity, sink=first.submit, keep_log=False)
    signed = []
    for n in range(6):
        with signer.session(session_id=f"s{n}") as session:
            signed.append(session.intent("refund", {"ticket": n}))
            signed.append(session.decision("allow", reasons=[]))
            signed.append(session.output("done"))
    assert not first.flush(timeout=0.5)
    assert first.stats()["failures"] >= 1 and AuditEvent.objects.count() == 0
    # The agent process dies here (no close): its thread stops, the spool stays on disk.
    first._stop.set()
    first._wake.set()
    first._thread.join(timeout=5)

    proxy = start_proxy(port, live_server.url)
    try:
        second = Shipper(identity, url, tmp_path, flush_interval=0.05).start()
        assert second.close(timeout=30), second.stats()
        assert second.stats()["sent"] == len(signed)
    finally:
        proxy.shutdown()
        proxy.server_close()

    stored = list(AuditEvent.objects.order_by("session_id", "seq").values_list("record_id", flat=True))
    assert sorted(str(r) for r in stored) == sorted(r["record_id"] for r in signed)
    # Anything the first shipper also managed to send is stored once; a resend is quarantined as replayed.
    assert QuarantinedRecord.objects.exclude(reason="replayed").count() == 0
    assert not list(tmp_path.iterdir())
