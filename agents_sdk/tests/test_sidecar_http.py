"""`warden sidecar` under hostile HTTP, against the real server process: oversized heads and
bodies, slow clients, bad JSON, bad Content-Length, chunked bodies and pipelining. Every
answer is OPA's JSON error shape, and the sidecar keeps deciding for everyone else."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

import pytest

from agents_sdk.sidecar.config import MAX_HEADER_BYTES, MAX_REQUEST_BODY, READ_TIMEOUT
from agents_sdk.tests.signed_bundles import REPO_ROOT, BundleServer, RSASigner, build_bundle

from .test_sidecar import EXAMPLES, opa_config

DECISION = "/v1/data/warden/decision"
ALLOWED = json.dumps({"input": EXAMPLES[2]}).encode()  # ticket_read: allowed by the pack


@pytest.fixture(scope="module")
def port(tmp_path_factory) -> Iterator[int]:
    signer = RSASigner("warden-test")
    tmp = tmp_path_factory.mktemp("sidecar-http")
    with BundleServer() as server:
        server.state.publish(build_bundle(signer, revision="rev-1"))
        config = tmp / "config.json"
        config.write_text(json.dumps(opa_config(server, signer, tmp)))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        process = subprocess.Popen(
            [sys.executable, "-m", "agents_sdk", "sidecar", "--config", str(config), "--addr", f"127.0.0.1:{free}"],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    with connect(free) as sock:
                        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                        if read_response(sock.makefile("rb"))[0] == 200:
                            break
                except (OSError, ValueError):
                    pass
                time.sleep(0.1)
            else:
                pytest.fail("the sidecar did not become healthy")
            yield free
            assert process.poll() is None, "the sidecar process died"
        finally:
            process.terminate()
            process.wait(10)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT + 10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(stream: BinaryIO) -> tuple[int, dict[str, str], object]:
    """One HTTP/1.1 response with a Content-Length body: status, headers, JSON body."""
    status_line = stream.readline()
    if not status_line:
        raise ValueError("connection closed without a response")
    status = int(status_line.split()[1])
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = stream.read(int(headers["content-length"]))
    return status, headers, json.loads(body)


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], object, bytes]:
    """Send raw bytes; the first response, and what follows it before the server closes."""
    with connect(port) as sock:
        sock.sendall(raw)
        stream = sock.makefile("rb")
        status, headers, body = read_response(stream)
        rest = stream.read() if headers.get("connection") == "close" else b""
        return status, headers, body, rest


def post_head(length: int | None = None, **extra: str) -> bytes:
    lines = [f"POST {DECISION} HTTP/1.1", "Host: sidecar", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_decides(port: int) -> None:
    status, _, body, _ = exchange(port, post_head(len(ALLOWED)) + ALLOWED)
    assert status == 200 and body["result"]["allow"] is True  # type: ignore[index]


def test_a_body_declared_too_large_is_refused_before_it_is_sent(port):
    started = time.monotonic()
    status, headers, body, rest = exchange(port, post_head(MAX_REQUEST_BODY + 1))
    assert (status, body["code"]) == (413, "invalid_parameter")  # type: ignore[index]
    assert headers["connection"] == "close" and rest == b""
    assert time.monotonic() - started < READ_TIMEOUT  # answered at once, not after waiting for the body
    assert_decides(port)


def test_a_chunked_body_past_the_limit_is_refused_while_it_streams(port):
    chunk = b"x" * (1024 * 1024)
    with connect(port) as sock:
        sock.sendall(post_head(Transfer_Encoding="chunked"))
        refused = None
        try:
            for _ in range(MAX_REQUEST_BODY // len(chunk) + 2):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            refused = True  # the sidecar closed the connection after answering
        status, headers, body = read_response(sock.makefile("rb"))
    assert status == 413 and body["message"] == "request body too large"  # type: ignore[index]
    assert headers["connection"] == "close" or refused
    assert_decides(port)


def test_a_head_past_the_limit_is_431(port):
    status, _, body, rest = exchange(port, post_head(2, X_Filler="a" * (MAX_HEADER_BYTES + 10)) + b"{}")
    assert status == 431 and body["message"] == "request headers too large"  # type: ignore[index]
    assert rest == b""
    # One header line that never ends is bounded the same way.
    with connect(port) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nX-Endless: {'a' * (2 * MAX_HEADER_BYTES)}".encode())
        assert read_response(sock.makefile("rb"))[0] == 431
    assert_decides(port)


@pytest.mark.parametrize("head, detail", [
    (post_head(None, Content_Length="abc"), "Content-Length"),
    (post_head(None, Content_Length="-1"), "Content-Length"),
    (post_head(2, Content_Length="3"), "Content-Length"),  # two different lengths
    (post_head(2, Transfer_Encoding="chunked"), "Content-Length"),  # request smuggling
    (b"POST /v1/data/warden/decision HTTP/1.1 extra\r\n\r\n", "HTTP"),
])
def test_a_malformed_request_is_a_json_400_and_the_connection_closes(port, head, detail):
    status, headers, body, rest = exchange(port, head + b"{}")
    assert (status, body["code"]) == (400, "invalid_parameter")  # type: ignore[index]
    assert body["message"].startswith("malformed HTTP request")  # type: ignore[index]
    assert headers["connection"] == "close" and rest == b""
    assert_decides(port)


def test_bad_json_is_a_400_naming_the_problem(port):
    status, _, body, _ = exchange(port, post_head(9) + b"{not json")
    assert status == 400 and "malformed input document" in body["message"]  # type: ignore[index]
    status, _, body, _ = exchange(port, post_head(2) + b"[]")
    assert status == 400 and body["message"] == 'body must be {"input": …}'  # type: ignore[index]


def test_a_chunked_body_is_decided_like_any_other(port):
    pieces = [ALLOWED[:10], ALLOWED[10:50], ALLOWED[50:]]
    chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\nX-Trailer: t\r\n\r\n"
    status, _, body, _ = exchange(port, post_head(Transfer_Encoding="chunked") + chunked)
    assert status == 200 and body["result"]["allow"] is True  # type: ignore[index]
    status, _, body, _ = exchange(port, post_head(Transfer_Encoding="chunked") + b"zz\r\n{}\r\n0\r\n\r\n")
    assert status == 400 and body["message"].startswith("malformed HTTP request")  # type: ignore[index]


def test_pipelined_requests_are_answered_in_order_on_one_connection(port):
    denied = json.dumps({"input": EXAMPLES[1]}).encode()  # a /prod/ delete: not allowed
    requests = [ALLOWED, denied, ALLOWED]
    raw = b"".join(post_head(len(body)) + body for body in requests) + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    with connect(port) as sock:
        sock.sendall(raw)  # all at once, before reading any answer
        stream = sock.makefile("rb")
        answers = [read_response(stream) for _ in range(4)]
    assert [status for status, _, _ in answers] == [200, 200, 200, 200]
    assert [body["result"]["allow"] for _, _, body in answers[:3]] == [True, False, True]  # type: ignore[index]
    assert len({body["decision_id"] for _, _, body in answers[:3]}) == 3  # type: ignore[index]
    assert answers[3][2] == {}


def test_a_slow_client_is_cut_off_while_others_are_served(port):
    """A slowloris client sends its head a byte at a time; it gets 408 once ``READ_TIMEOUT``
    has passed since its first byte, and never holds up anyone else's decision."""
    outcome: dict[str, object] = {}

    def trickle() -> None:
        with connect(port) as sock:
            started = time.monotonic()
            try:
                for byte in post_head(len(ALLOWED)):
                    sock.sendall(bytes([byte]))
                    time.sleep(0.25)
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                outcome["answer"] = read_response(sock.makefile("rb"))
            except (OSError, ValueError) as exc:
                outcome["answer"] = exc
            outcome["after"] = time.monotonic() - started

    slow = threading.Thread(target=trickle)
    slow.start()
    served = 0
    while slow.is_alive():
        assert_decides(port)
        served += 1
        time.sleep(0.2)
    slow.join()
    status, headers, body = outcome["answer"]  # type: ignore[misc]
    assert status == 408 and "did not arrive" in body["message"] and headers["connection"] == "close"
    assert READ_TIMEOUT <= outcome["after"] < READ_TIMEOUT + 5  # type: ignore[operator]
    assert served > 10
