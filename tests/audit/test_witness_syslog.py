"""The external witness: every witness line also reaches a remote syslog collector as an RFC 5424
message (WARDEN_AUDIT_WITNESS_SYSLOG), over a real socket; a collector that is down never
loses the log its commit, and the local file still has every line."""

from __future__ import annotations

import json
import re
import socket
import socketserver
import threading

import pytest

from controlplane.audit import checkpoints, witness, witness_sinks
from tests.audit.conftest import sign_session

pytestmark = pytest.mark.django_db

# <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG (RFC 5424)
RFC5424 = re.compile(rb"^<(\d{1,3})>1 (\S+Z) (\S+) warden-audit (\d+) witness - (\{.*\})$", re.S)


class Collector:
    """A syslog collector on 127.0.0.1: TCP with octet-counting frames (RFC 6587) and UDP."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.arrived = threading.Condition()
        collector = self

        class TCP(socketserver.StreamRequestHandler):
            def handle(self):
                while True:
                    length = b""
                    while (char := self.rfile.read(1)) not in (b" ", b""):
                        length += char
                    if not length:
                        return
                    collector.keep(self.rfile.read(int(length)))

        class UDP(socketserver.BaseRequestHandler):
            def handle(self):
                collector.keep(self.request[0])

        self.tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), TCP)
        self.udp = socketserver.UDPServer(("127.0.0.1", 0), UDP)
        for server in (self.tcp, self.udp):
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def keep(self, message: bytes) -> None:
        with self.arrived:
            self.messages.append(message)
            self.arrived.notify_all()

    def wait_for(self, count: int) -> list[bytes]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.messages) >= count, timeout=10), self.messages
            return list(self.messages)

    def close(self) -> None:
        for server in (self.tcp, self.udp):
            server.shutdown()
            server.server_close()


@pytest.fixture
def collector():
    running = Collector()
    yield running
    running.close()


def parsed(message: bytes) -> dict:
    match = RFC5424.match(message)
    assert match, message
    assert int(match.group(1)) == 13 * 8 + 5  # facility log audit, severity notice
    return json.loads(match.group(5))


@pytest.mark.parametrize("scheme", ["tcp", "udp"])
def test_every_checkpoint_head_and_batch_reaches_the_collector(scheme, collector, ship, signer, settings,
                                                               django_capture_on_commit_callbacks, audit_witness):
    port = (collector.tcp if scheme == "tcp" else collector.udp).server_address[1]
    settings.WARDEN_AUDIT_WITNESS_SYSLOG = f"{scheme}://127.0.0.1:{port}"
    ship(sign_session(signer, "s1"))  # the verified batch's line
    with django_capture_on_commit_callbacks(execute=True):
        made = checkpoints.create_checkpoints()
    lines, problems = witness.read()
    assert problems == [] and len(lines) >= 2
    received = [parsed(message) for message in collector.wait_for(len(lines))]
    assert received == lines  # the same lines, in the same order, as the local file
    heads = [line for line in received if line["type"] == "checkpoint"]
    assert heads[-1]["sequence"] == made[-1].sequence and heads[-1]["signature"] == made[-1].signature


def test_a_collector_that_is_down_is_an_alert_and_the_local_witness_still_has_the_line(
        ship, signer, settings, django_capture_on_commit_callbacks, caplog):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.WARDEN_AUDIT_WITNESS_SYSLOG = f"tcp://127.0.0.1:{port}"
    ship(sign_session(signer, "s1"))
    with django_capture_on_commit_callbacks(execute=True):
        checkpoints.create_checkpoints()
    assert any(line["type"] == "checkpoint" for line in witness.read()[0])
    assert "ALERT the external audit witness" in caplog.text


@pytest.mark.parametrize("value", ["syslog.example.com:514", "http://127.0.0.1:514", "tcp://127.0.0.1",
                                   "tcp://127.0.0.1:99999", "udp://:514", "tcp://127.0.0.1:514/x", "tcp://[::1:514"])
def test_a_malformed_collector_address_is_refused_with_the_variable_named(value, settings):
    settings.WARDEN_AUDIT_WITNESS_SYSLOG = value
    with pytest.raises(witness_sinks.SinkError, match="WARDEN_AUDIT_WITNESS_SYSLOG"):
        witness_sinks.send({"type": "checkpoint"})


def test_hostile_text_in_a_line_cannot_forge_a_second_syslog_message():
    """The MSG is canonical JSON: CR, LF and NUL are escaped, so one line is one message."""
    message = witness_sinks.message({"type": "batch", "note": "x\n<13>1 2026-01-01T00:00:00Z evil - - - - {}\x00\r"})
    assert b"\n" not in message and b"\r" not in message and b"\x00" not in message
    assert parsed(message)["note"].startswith("x\n<13>1")
