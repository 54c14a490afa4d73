"""A small HTTP/1.1 reader for the sidecar's asyncio server."""


from __future__ import annotations

import asyncio
import json
from typing import Any

from agents_sdk.errors import WardenError
from agents_sdk.sidecar.config import MAX_HEADER_BYTES, MAX_REQUEST_BODY

# -- a small HTTP/1.1 reader ----------------------------------------------------------------


class BadRequest(WardenError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
            431: "Request Header Fields Too Large", 500: "Internal Server Error"}


def parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    if len(head) > MAX_HEADER_BYTES:
        raise BadRequest(431, "request headers too large")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], parts[2], headers


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError as exc:
                raise BadRequest(400, "malformed chunk size") from exc
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return bytes(body)
            if len(body) + size > MAX_REQUEST_BODY:
                raise BadRequest(413, "request body too large")
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    length = headers.get("content-length")
    if not length:
        return b""
    try:
        size = int(length)
    except ValueError as exc:
        raise BadRequest(400, "malformed Content-Length") from exc
    if size < 0 or size > MAX_REQUEST_BODY:
        raise BadRequest(413, "request body too large")
    return await reader.readexactly(size)


def keep_alive(version: str, headers: dict[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"


def http_response(status: int, answer: Any, keep_alive: bool) -> bytes:
    body = json.dumps(answer, separators=(",", ":")).encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode("ascii") + body


