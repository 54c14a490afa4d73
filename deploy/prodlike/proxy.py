"""The load balancer of `make prodlike`: an ASGI reverse proxy (run by uvicorn) that spreads
requests round-robin over the web processes, as a TLS-terminating proxy would: it sets
X-Forwarded-Proto: https and X-Forwarded-For, and moves on to the next backend when one
refuses the connection. GET /__proxy__/stats shows how many requests each backend took.

    PRODLIKE_BACKENDS=http://127.0.0.1:8601,http://127.0.0.1:8602 \\
    uvicorn --app-dir deploy/prodlike proxy:app --port 8600
"""

from __future__ import annotations

import collections
import itertools
import json
import os

import httpx

BACKENDS = [url.rstrip("/") for url in os.environ.get("PRODLIKE_BACKENDS", "").split(",") if url]
# Hop-by-hop headers (RFC 9110 7.6.1) are the proxy's own, never forwarded.
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
              b"transfer-encoding", b"upgrade", b"host"}
_turn = itertools.count()
served: collections.Counter[str] = collections.Counter()
_client: httpx.AsyncClient | None = None


async def _lifespan(receive, send):
    global _client
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # Held long polls last up to 30 s upstream.
            _client = httpx.AsyncClient(timeout=httpx.Timeout(90.0, connect=2.0), limits=httpx.Limits(max_connections=200))
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _client is not None:
                await _client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _answer(send, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    if scope["path"] == "/__proxy__/stats":
        await _answer(send, 200, json.dumps(served).encode())
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
    host = dict(scope["headers"]).get(b"host", b"localhost")
    client_ip = (scope.get("client") or ("127.0.0.1", 0))[0]
    headers += [(b"host", host), (b"x-forwarded-proto", b"https"), (b"x-forwarded-for", client_ip.encode())]
    target = scope["raw_path"].decode("latin-1") + (("?" + scope["query_string"].decode("latin-1"))
                                                    if scope["query_string"] else "")
    assert _client is not None
    for _ in range(len(BACKENDS)):
        backend = BACKENDS[next(_turn) % len(BACKENDS)]
        request = _client.build_request(scope["method"], backend + target, headers=headers, content=body)
        try:
            response = await _client.send(request, stream=True)
        except httpx.ConnectError:
            continue  # that process is down: the next one
        except httpx.TimeoutException:
            await _answer(send, 504, b'{"detail": "upstream timed out"}')
            return
        served[backend] += 1
        try:
            out = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.multi_items()
                   if k.lower().encode("latin-1") not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status_code, "headers": out})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()
        return
    await _answer(send, 502, b'{"detail": "no web process answered"}')
