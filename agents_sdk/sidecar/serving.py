"""The sidecar's HTTP layer: an asyncio protocol over httptools (llhttp, the parser Node.js
uses), with the limits a decision server exposed to every process on the host needs.

llhttp parses every byte (request line, headers, Content-Length, chunked framing); this
module only frames answers and bounds what a client may hold:

- a request head larger than ``MAX_HEADER_BYTES`` is refused with 431, a body larger than
  ``MAX_REQUEST_BODY`` (declared or sent in chunks) with 413, before it is buffered;
- a request must arrive whole within ``read_timeout`` seconds of its first byte, however
  slowly it trickles in (a slowloris client is answered 408 and closed), and a connection
  with no request in flight is closed after ``keep_alive_timeout`` seconds idle;
- what llhttp rejects (bad Content-Length, Content-Length with chunked, a malformed request
  line or chunk) is a 400 in OPA's error shape, and the connection is closed;
- pipelined requests are answered in order, and all the answers to one read go out in one
  write.

Why not an ASGI server: a decision is synchronous (the engine lives on the loop's thread),
so the handler is called from llhttp's message-complete callback and its answer written at
once. uvicorn's ASGI cycle (a task, an event, two sends, header checks, timer handles per
request) cost more CPU than the decision itself. Timeouts are checked by one sweep per
server every ``TICK`` seconds instead of a timer per request.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any, NoReturn, cast

import httptools

from agents_sdk.errors import WardenError
from agents_sdk.sidecar.config import MAX_HEADER_BYTES, MAX_REQUEST_BODY, READ_TIMEOUT

Handler = Callable[[str, str, bytes, str], tuple[int, bytes]]
"""``handler(method, target, body, requested_by) -> (status, JSON body)``, on the loop thread."""

KEEP_ALIVE_TIMEOUT = 60
"""Seconds an idle keep-alive connection is kept open."""

TICK = 0.1
"""Seconds between checks of ``should_exit`` and of every connection's deadlines."""

SLICE = 8192
"""Bytes parsed at a time: bounds the answers queued for a client that reads none."""

_STATUS = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode("ascii")) for status in http.HTTPStatus
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_METHODS: dict[bytes, str] = {}


def encode(answer: Any) -> bytes:
    return json.dumps(answer, separators=(",", ":")).encode("utf-8")


class _Clock:
    """The Date header, formatted once a second."""

    second = -1
    date = b""

    @classmethod
    def header(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.date = b"date: " + email.utils.formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
            cls.second = now
        return cls.date


class Text(bytes):
    """A handler's answer that is not JSON: ``Text(body)`` is sent as ``content_type``."""

    content_type = b"text/plain; charset=utf-8"


class PrometheusText(Text):
    """Prometheus's text exposition format (a ``/metrics`` answer)."""

    content_type = b"text/plain; version=0.0.4; charset=utf-8"


_JSON = b"application/json"


def response(status: int, body: bytes, *, close: bool = False, head_only: bool = False) -> bytes:
    """A whole response: status line, headers and (but for HEAD) the body; JSON unless the
    body is a ``Text``."""
    head = b"%s%scontent-type: %s\r\ncontent-length: %d\r\n%s\r\n" % (
        _STATUS.get(status) or b"HTTP/1.1 %d \r\n" % status,
        _Clock.header(),
        _JSON if type(body) is bytes else getattr(body, "content_type", _JSON),
        len(body),
        b"connection: close\r\n" if close else b"",
    )
    return head if head_only else head + body


def _refusal(status: int, message: str) -> bytes:
    """A complete response that closes the connection."""
    return response(status, encode({"code": "invalid_parameter", "message": message}), close=True)


class _Stop(WardenError):  # noqa: N818 - a signal, not an error
    """Raised inside an llhttp callback to stop parsing this connection's bytes (never leaves
    this module; a WardenError all the same, as every exception the SDK defines)."""


class Connection(asyncio.Protocol):
    """One client connection. Per request: llhttp's callbacks, one handler call, and one
    ``transport.write`` per read however many requests it held."""

    def __init__(self, server: Server):
        self._server = server
        self._handler = server.handler
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._requested_by = ""
        self._out: list[bytes] = []  # answers to the bytes being parsed, written after the read
        self._closing = False
        self._write_paused = False
        self._pending = b""  # bytes read but not parsed while the client reads no answers
        self._refusal: tuple[int, str] | None = None  # set where a callback stops the parser
        # The request being read.
        self._in_head = True
        self._heads = 0  # heads parsed on this connection
        self._head_raw = 0  # bytes of reads that ended no head (llhttp holds them)
        self._head_parsed = 0  # bytes llhttp handed over for this head (a whole head may arrive in one read)
        self._url = b""
        self._declared = -1  # Content-Length
        self._expect_continue = False
        self._body: list[bytes] = []
        self._body_size = 0
        # Deadlines, checked by Server.sweep (loop.time()).
        self.request_started: float | None = None
        self.idle_since = 0.0
        self.paused_since: float | None = None  # the client has not read its answers since

    # -- asyncio ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport: asyncio's subclass asyncio.Transport, uvloop's does not.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self._requested_by = f"{peer[0]}:{peer[1]}"
        self.idle_since = self._server.now()
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._server.connections.discard(self)

    def pause_writing(self) -> None:
        # A client that sends requests but reads no answers: stop reading (and parsing) its
        # requests until it reads, instead of buffering its answers without bound.
        self._write_paused = True
        self.paused_since = self._server.now()
        if self._transport is not None and not self._closing:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self.paused_since = None
        if self.request_started is not None:
            self.request_started = self._server.now()  # its bytes were not read while paused
        pending, self._pending = self._pending, b""
        if pending:
            self._feed(pending)
        if self._transport is not None and not self._closing and not self._write_paused:
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._write_paused:
            self._pending += data  # read before the pause took effect
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        # A read may hold thousands of small pipelined requests: parse it a slice at a time,
        # and keep the rest for later once the answers so far fill the transport's buffer.
        if len(data) <= SLICE:
            self._parse(data)
            return
        for start in range(0, len(data), SLICE):
            self._parse(data[start : start + SLICE])
            if self._closing:
                return
            if self._write_paused:
                self._pending = data[start + SLICE :]
                return

    def _parse(self, data: bytes) -> None:
        heads = self._heads
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._close()  # the request before the upgrade is answered; no other protocol is spoken
        except httptools.HttpParserError as exc:
            refusal = self._refusal
            if refusal is None:
                refusal = (400, f"malformed HTTP request: {exc or 'invalid HTTP request'}")
            if refusal[0]:
                self._out.append(_refusal(*refusal))
            self._close()
        else:
            if self._in_head and self._heads == heads and not self._closing:
                # No head ended in these bytes: llhttp and httptools hold them (a header line
                # grows for as long as it is sent), so they count against the head's limit.
                self._head_raw += len(data)
                if self._head_raw > MAX_HEADER_BYTES:
                    self._out.append(_refusal(431, "request headers too large"))
                    self._close()
        if self._out:
            out = self._out
            self._out = []
            if self._transport is not None:
                self._transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self._closing and self._transport is not None:
            self._transport.close()

    def _close(self) -> None:
        self._closing = True
        self.request_started = None

    def timed_out(self, message: str | None) -> None:
        """Called by the server's sweep: 408 for a request still arriving, else just close."""
        if self._closing or self._transport is None:
            return
        if message is not None:
            self._transport.write(_refusal(408, message))
        self._close()
        self._transport.close()

    # -- llhttp callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.request_started = self._server.now()
        self._in_head = True
        self._head_parsed = 0
        self._url = b""
        self._declared = -1
        self._expect_continue = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_parsed += len(url)
        if self._head_parsed > MAX_HEADER_BYTES:
            self._stop(431, "request headers too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        # Called for every header line: the head is counted here, without a call of its own.
        self._head_parsed += len(name) + len(value) + 4
        if self._head_parsed > MAX_HEADER_BYTES:
            self._stop(431, "request headers too large")
        if len(name) == 14 and name.lower() == b"content-length":
            self._declared = int(value)  # llhttp accepts only digits, and one length
        elif len(name) == 6 and name.lower() == b"expect" and value.lower() == b"100-continue":
            self._expect_continue = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_raw = 0
        self._heads += 1
        if self._declared > MAX_REQUEST_BODY:
            self._stop(413, "request body too large")  # answered before the body is sent
        if self._expect_continue and self._transport is not None:
            self._out.append(_CONTINUE)
            self._transport.write(b"".join(self._out))
            self._out = []

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > MAX_REQUEST_BODY:
            self._stop(413, "request body too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.request_started = None
        self.idle_since = self._server.now()
        self._in_head = True
        parser = self._parser
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method)
        if method is None:
            method = (
                _METHODS.setdefault(raw_method, raw_method.decode("ascii"))
                if len(_METHODS) < 64
                else raw_method.decode("ascii")
            )
        chunks = self._body
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._body = []
        self._body_size = 0
        keep_alive = parser.should_keep_alive() and parser.get_http_version() == "1.1"
        status, answer = self._handler(method, self._target(), body, self._requested_by)
        self._out.append(response(status, answer, close=not keep_alive, head_only=method == "HEAD"))
        if not keep_alive:
            self._stop(0, "")  # answered; whatever follows is not read

    def _target(self) -> str:
        url = self._url
        if url[:1] == b"/" and b"#" not in url:
            return url.decode("latin-1")  # origin form, as agents send it
        try:
            parsed = httptools.parse_url(url)  # absolute form: the path and query only
        except httptools.HttpParserInvalidURLError:
            self._stop(400, "malformed HTTP request: invalid URL")
        target = (parsed.path or b"/").decode("latin-1")
        return target + "?" + parsed.query.decode("latin-1") if parsed.query else target

    def _stop(self, status: int, message: str) -> NoReturn:
        """Refuse (``status`` 0: just close after what is answered) and stop parsing."""
        self._refusal = (status, message)
        raise _Stop


class Server:
    """Serves ``handler`` on listening sockets: ``await serve(sockets)`` on the loop that owns
    the engine; ``should_exit = True`` (from any thread) stops it within ``TICK`` seconds."""

    def __init__(
        self, handler: Handler, *, read_timeout: float = READ_TIMEOUT, keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT
    ):
        self.handler = handler
        self.read_timeout = read_timeout
        self.keep_alive_timeout = keep_alive_timeout
        self.should_exit = False
        self.connections: set[Connection] = set()
        self.now: Callable[[], float] = time.monotonic

    async def serve(self, sockets: list[socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        self.now = loop.time
        servers = [await loop.create_server(lambda: Connection(self), sock=sock) for sock in sockets]
        try:
            while not self.should_exit:
                await asyncio.sleep(TICK)
                self.sweep()
        finally:
            for listening in servers:
                listening.close()
            # No request is ever in flight between reads (each is answered as it completes).
            for connection in list(self.connections):
                connection.timed_out(None)
            await asyncio.sleep(0)  # let the transports close

    def sweep(self) -> None:
        now = self.now()
        for connection in list(self.connections):
            started = connection.request_started
            if connection.paused_since is not None:
                # Answers wait for this client to read them: it is neither idle nor slow to
                # send, but it may not hold the connection for ever.
                if now - connection.paused_since >= self.keep_alive_timeout:
                    connection.timed_out(None)
            elif started is not None:
                if now - started >= self.read_timeout:
                    connection.timed_out(f"the request did not arrive within {self.read_timeout:g} s")
            elif now - connection.idle_since >= self.keep_alive_timeout:
                connection.timed_out(None)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop the sidecar serves on: uvloop's (libuv; less CPU per request than asyncio's
    selector loop) where it is installed (the ``sidecar`` extra) and not turned off with
    ``WARDEN_SIDECAR_LOOP=asyncio``; otherwise asyncio's own."""
    if os.environ.get("WARDEN_SIDECAR_LOOP", "").strip().lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


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


def server(
    handler: Handler, *, read_timeout: float = READ_TIMEOUT, keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT
) -> Server:
    """A server for ``handler``; run it with ``serve(sockets=[listening_socket(...)])`` on the
    loop that owns the engine, stop it with ``should_exit = True``."""
    return Server(handler, read_timeout=read_timeout, keep_alive_timeout=keep_alive_timeout)
