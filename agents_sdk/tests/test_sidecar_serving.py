"""The sidecar's HTTP protocol (agents_sdk.sidecar.serving) under hostile and unusual
shapes, served over real sockets with a recording handler and short timeouts: what reaches
the handler, what is answered, in what order, and when the connection closes."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agents_sdk.sidecar import serving
from agents_sdk.sidecar.config import MAX_HEADER_BYTES

from .test_sidecar_http import read_response

TIMEOUT = 0.6  # read and keep-alive timeouts of the server under test
# Where a test checks that the server closes a connection itself, the idle timeout must not
# do it instead: the client's socket timeout (10 s) fails the read first.
patient = pytest.mark.parametrize("served", [60.0], indirect=True)


class Served:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes, str]] = []
        self.answer_size = 0  # pad answers to this many bytes (a client that reads none)
        self.port = 0

    def handler(self, method: str, target: str, body: bytes, requested_by: str) -> tuple[int, bytes]:
        self.calls.append((method, target, body, requested_by))
        answer: dict[str, Any] = {"n": len(self.calls), "method": method, "target": target, "body": body.decode()}
        if self.answer_size:
            answer["pad"] = "x" * self.answer_size
        return 200, json.dumps(answer).encode()


@pytest.fixture(params=["asyncio", "uvloop"])
def new_loop(request) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loops the sidecar serves on (agents_sdk.sidecar.serving.new_event_loop)."""
    if request.param == "uvloop":
        return pytest.importorskip("uvloop").new_event_loop  # type: ignore[no-any-return]
    return asyncio.new_event_loop


@pytest.fixture(params=[TIMEOUT])
def served(request, new_loop) -> Iterator[Served]:
    state = Served()
    server = serving.server(state.handler, read_timeout=TIMEOUT, keep_alive_timeout=request.param)
    sock = serving.listening_socket("127.0.0.1", 0)
    state.port = sock.getsockname()[1]

    def serve() -> None:
        loop = new_loop()
        try:
            loop.run_until_complete(server.serve([sock]))
        finally:
            loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield state
    server.should_exit = True
    thread.join(5)
    sock.close()
    assert not thread.is_alive()


def connect(state: Served) -> socket.socket:
    return socket.create_connection(("127.0.0.1", state.port), timeout=10)


def rest_of(sock: socket.socket) -> bytes:
    """Everything until the server closes (fails the test if it never does)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_expect_100_continue_is_answered_before_the_body_is_sent(served):
    with connect(served) as sock:
        sock.sendall(b"POST /v1/data/x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        sock.settimeout(3)
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"  # curl waits for this before its body
        sock.sendall(b"{}")
        status, _, body = read_response(sock.makefile("rb"))
    assert status == 200 and body["body"] == "{}"  # type: ignore[index]


@patient
@pytest.mark.parametrize(
    "head",
    [
        b"GET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /health HTTP/1.0\r\n\r\n",
    ],
)
def test_a_last_request_is_answered_and_what_follows_it_is_not_read(served, head):
    with connect(served) as sock:
        sock.sendall(head + b"GET /second HTTP/1.1\r\nHost: h\r\n\r\n")
        stream = sock.makefile("rb")
        status, headers, _ = read_response(stream)
        assert status == 200 and headers["connection"] == "close"
        assert stream.read() == b""
    assert [call[1] for call in served.calls] == ["/health"]


@patient
def test_a_malformed_request_after_good_ones_is_refused_after_their_answers(served):
    good = b"POST /v1/data/a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}"
    with connect(served) as sock:
        sock.sendall(
            good + good + b"POST /v1/data/a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}" + good
        )
        stream = sock.makefile("rb")
        answers = [read_response(stream) for _ in range(3)]
        assert stream.read() == b""  # closed after the refusal: the fourth request is never read
    assert [status for status, _, _ in answers] == [200, 200, 400]
    assert [body["n"] for _, _, body in answers[:2]] == [1, 2]  # type: ignore[index]
    assert answers[2][2]["message"].startswith("malformed HTTP request")  # type: ignore[index]
    assert answers[2][1]["connection"] == "close" and len(served.calls) == 2


def test_a_body_that_stops_arriving_is_408_and_never_reaches_the_handler(served):
    with connect(served) as sock:
        started = time.monotonic()
        sock.sendall(b'POST /v1/data/a HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n{"inp')
        status, headers, body = read_response(sock.makefile("rb"))
        waited = time.monotonic() - started
    assert status == 408 and headers["connection"] == "close" and "did not arrive" in body["message"]  # type: ignore[index]
    assert TIMEOUT <= waited and served.calls == []


def test_idle_connections_are_closed_whether_or_not_they_asked_anything(served):
    with connect(served) as silent, connect(served) as asked:
        asked.sendall(b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n")
        status, headers, _ = read_response(asked.makefile("rb"))
        assert status == 200 and "connection" not in headers  # kept alive, for a while
        started = time.monotonic()
        assert rest_of(silent) == b"" and rest_of(asked) == b""  # closed, with no answer
        assert TIMEOUT - 0.2 <= time.monotonic() - started


def test_a_head_request_gets_headers_only_and_the_next_answer_follows_cleanly(served):
    with connect(served) as sock:
        sock.sendall(b"HEAD /health HTTP/1.1\r\nHost: h\r\n\r\nGET /health HTTP/1.1\r\nHost: h\r\n\r\n")
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"HTTP/1.1 200")
        lines = []
        while (line := stream.readline()) != b"\r\n":
            lines.append(line.lower())
        assert any(line.startswith(b"content-length: ") for line in lines)
        status, _, body = read_response(stream)  # the body of HEAD was not sent: this is the GET's answer
    assert status == 200 and body["method"] == "GET"  # type: ignore[index]


def test_an_absolute_form_target_reaches_the_handler_as_path_and_query(served):
    with connect(served) as sock:
        sock.sendall(b"GET http://sidecar:8181/v1/data/warden?metrics HTTP/1.1\r\nHost: sidecar\r\n\r\n")
        status, _, body = read_response(sock.makefile("rb"))
    assert status == 200 and body["target"] == "/v1/data/warden?metrics"  # type: ignore[index]
    assert served.calls[0][3].startswith("127.0.0.1:")  # requested_by: the peer's address


@patient
def test_an_upgrade_request_is_answered_and_no_other_protocol_is_spoken(served):
    with connect(served) as sock:
        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
            b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        stream = sock.makefile("rb")
        status, _, _ = read_response(stream)
        assert status == 200 and stream.read() == b""
    assert [call[1] for call in served.calls] == ["/health"]


def test_many_small_headers_past_the_limit_in_one_write_are_431(served):
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(MAX_HEADER_BYTES // 100))
    with connect(served) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: h\r\n" + headers + b"\r\n")
        status, headers_back, body = read_response(sock.makefile("rb"))
    assert status == 431 and headers_back["connection"] == "close" and served.calls == []
    assert body["message"] == "request headers too large"  # type: ignore[index]


@patient
def test_a_client_that_reads_no_answers_is_no_longer_read_until_it_does(served):
    """Answers pile up in the kernel's buffers, then in the transport's, and then the server
    stops reading that client's requests (its sends block) instead of buffering its answers,
    or its requests, without bound; once it reads, it is answered in order."""
    served.answer_size = 64 * 1024
    request = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
    count = 400_000  # 11 MiB of requests, 25 GiB of answers: far more than any buffer holds
    sock = connect(served)

    def send() -> None:
        try:
            sock.sendall(request * count)
        except OSError:
            pass  # closed by the test once it has read enough

    sender = threading.Thread(target=send)
    sender.start()
    try:
        time.sleep(1.5)
        answered_before_reading = len(served.calls)
        assert sender.is_alive()  # the server stopped reading: the client's sends block
        # One slice of requests was parsed, then the server waited for the client to read.
        assert answered_before_reading <= serving.SLICE // len(request) + 1
        stream = sock.makefile("rb")
        answers = [read_response(stream) for _ in range(answered_before_reading + 500)]
        assert [body["n"] for _, _, body in answers] == list(range(1, len(answers) + 1))  # type: ignore[index]
    finally:
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        sender.join(10)
