"""The sidecar's HTTP layer: uvicorn with httptools (llhttp) parses HTTP/1.1, this module
adds the limits a decision server exposed to every process on the host needs.

- a request head larger than ``MAX_HEADER_BYTES`` is refused with 431, a body larger than
  ``MAX_REQUEST_BODY`` (declared or sent in chunks) with 413, before it is buffered;
- a request must arrive whole within ``read_timeout`` seconds of its first byte, however
  slowly it trickles in (a slowloris client is answered 408 and closed), and a connection
  with no request in flight is closed after ``keep_alive_timeout`` seconds idle;
- what llhttp rejects (bad Content-Length, Content-Length with chunked, a malformed request
  line or chunk) is a 400 in OPA's error shape, and the connection is closed;
- pipelined requests are answered in order (uvicorn queues them).

Every answer is JSON. The ASGI application runs on the server's event loop thread, the
thread that owns the Rego engine, so a request is one parse, one evaluation and one write.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from agents_sdk.errors import WardenError
from agents_sdk.sidecar.config import MAX_HEADER_BYTES, MAX_REQUEST_BODY, READ_TIMEOUT

Handler = Callable[[str, str, bytes, str], tuple[int, Any]]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

KEEP_ALIVE_TIMEOUT = 60
"""Seconds an idle keep-alive connection is kept open."""

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 413: b"Payload Too Large",
            431: b"Request Header Fields Too Large"}


def encode(answer: Any) -> bytes:
    return json.dumps(answer, separators=(",", ":")).encode("utf-8")


def _refusal(status: int, message: str) -> bytes:
    """A complete response that closes the connection, written straight to the transport."""
    body = encode({"code": "invalid_parameter", "message": message})
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, _REASONS[status], len(body))) + body


class _HeadTooLarge(WardenError):
    """Raised inside httptools' header callback to stop parsing an oversized head."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the request head and on the time a
    request takes to arrive (uvicorn bounds neither: any byte resets its keep-alive timer)."""

    read_timeout = READ_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # uvicorn writes the head and the body separately: without this, Nagle holds the body
            # until the client's delayed ACK (40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._awaiting_head = True  # the next bytes start a request head
        self._head_bytes = 0
        self._heads = 0  # heads parsed on this connection
        self._parsed_head_bytes = 0
        self._head_too_large = False
        self._deadline: asyncio.TimerHandle | None = None
        self.access_log = False  # uvicorn logs each request when any handler is configured
        # uvicorn arms its idle timer only after a first response: a silent client is closed too.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        awaiting, heads = self._awaiting_head, self._heads
        if awaiting and self._deadline is None:
            self._deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)
        super().data_received(data)
        if awaiting and self._heads == heads:
            # No head ended in these bytes: llhttp holds them (a header line grows for as long as
            # it is sent), so they count against the head's limit.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEADER_BYTES:
                self._refuse(431, "request headers too large")

    def on_message_begin(self) -> None:
        self._parsed_head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        # A whole head may arrive in one read: count what the parser hands over too.
        self._parsed_head_bytes += size
        if self._parsed_head_bytes > MAX_HEADER_BYTES:
            self._head_too_large = True
            raise _HeadTooLarge  # httptools stops parsing; uvicorn calls send_400_response

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._head_bytes = 0
        self._heads += 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_head = True
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        # Called by uvicorn inside its `except httptools.HttpParserError`: name what llhttp refused.
        if self._head_too_large:
            self._refuse(431, "request headers too large")
            return
        error = sys.exc_info()[1]
        detail = str(error) if error is not None and str(error) else msg
        self._refuse(400, f"malformed HTTP request: {detail}")

    def _read_timed_out(self) -> None:
        self._deadline = None
        self._refuse(408, f"the request did not arrive within {self.read_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        if self.transport.is_closing():
            return
        cycle = self.cycle
        # Answer only where no other response is due on this connection first.
        if not self.pipeline and (cycle is None or cycle.response_complete or not cycle.response_started):
            self.transport.write(_refusal(status, message))
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # the handler waiting for this body gives up
                cycle.message_event.set()
        self.transport.close()


class DecisionApp:
    """The ASGI application: reads the body within the limit, calls ``handler(method, target,
    body, requested_by)`` (synchronously, on the loop thread) and writes its JSON answer."""

    def __init__(self, handler: Handler):
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; nothing else is served
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = int(value)  # llhttp accepts only digits here
        if declared is not None and declared > MAX_REQUEST_BODY:
            await self._answer(send, 413, {"code": "invalid_parameter", "message": "request body too large"}, close=True)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > MAX_REQUEST_BODY:
                await self._answer(send, 413, {"code": "invalid_parameter", "message": "request body too large"},
                                   close=True)
                return
            if not message.get("more_body", False):
                break
        target = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        client = scope.get("client")
        requested_by = f"{client[0]}:{client[1]}" if client else ""
        status, answer = self.handler(scope["method"], target, bytes(body), requested_by)
        await self._answer(send, status, answer)

    @staticmethod
    async def _answer(send: Send, status: int, answer: Any, *, close: bool = False) -> None:
        body = encode(answer)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("ascii"))]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def listening_socket(host: str, port: int) -> socket.socket:
    """Bind and listen before serving, so a taken address fails ``start()`` in the caller."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def server(handler: Handler, *, read_timeout: float = READ_TIMEOUT,
           keep_alive_timeout: int = KEEP_ALIVE_TIMEOUT) -> uvicorn.Server:
    """A uvicorn server for ``handler``; run it with ``serve(sockets=[listening_socket(...)])``
    on the loop that owns the engine, stop it with ``should_exit = True``."""
    protocol = type("SidecarHttpProtocol", (LimitedHttpToolsProtocol,), {"read_timeout": read_timeout})
    config = uvicorn.Config(
        DecisionApp(handler),
        http=protocol,
        loop="none",  # the caller's event loop
        lifespan="off",
        ws="none",
        interface="asgi3",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=keep_alive_timeout,
        timeout_graceful_shutdown=2,
    )
    return uvicorn.Server(config)
