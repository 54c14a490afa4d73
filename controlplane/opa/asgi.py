"""An ASGI fast path for OPA's bundle downloads, in front of Django.

A sidecar fleet polls constantly, and nearly every poll is a conditional GET answered 304.
Through Django's ASGI handler each request costs a new thread (its thread-sensitive
context) and a thread hop per sync middleware and signal: about 5 ms of CPU, so ~200
answers/s per process. Here the same answer (bundle_service.bundle_reply, shared with the
Django view) costs a dictionary lookup, and a held long poll costs a coroutine, not a
thread. When uploads are queued (controlplane.opa.uploads: Celery on Redis), POST logs and
POST status are answered here too: checked, queued, 200, with no thread and no query.
Everything else goes to Django unchanged.

    application = BundleServiceFastPath(get_asgi_application())   # controlplane/asgi.py
"""

from __future__ import annotations

import asyncio
import re

from controlplane.core.exceptions import PayloadTooLarge
from controlplane.opa import uploads
from controlplane.opa.bundle_service import Reply, bundle_reply, error_reply
from controlplane.opa.longpoll import long_poll_wait

# Where controlplane/urls.py mounts controlplane.opa.urls, plus the bundle resource.
BUNDLE_PATH = re.compile(r"^/opa/bundles/([-a-zA-Z0-9_]+)(?:/(policy|registry))?$")
# OPA's decision log and status uploads, with the deprecated partition name (controlplane.opa.urls).
UPLOAD_PATH = re.compile(r"^/opa/(logs|status)(?:/[-a-zA-Z0-9_]+)?$")


def _header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class BundleServiceFastPath:
    """ASGI middleware: GET /opa/bundles/<environment>[/policy|/registry] is answered here,
    the rest by `app`."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] in ("GET", "POST"):
            path = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root):]
            if scope["method"] == "GET":
                match = BUNDLE_PATH.match(path)
                if match:
                    await self._serve(match.group(1), scope, receive, send, part=match.group(2) or "")
                    return
            else:
                match = UPLOAD_PATH.match(path)
                if match and uploads.enabled():
                    await self._upload(match.group(1), scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _upload(self, kind: str, scope, receive, send) -> None:
        try:
            body = await _read_body(scope, receive, uploads.LIMITS[kind][0])
        except PayloadTooLarge as exc:
            await _send(send, error_reply(413, exc.message))
            return
        except ConnectionAbortedError:
            return
        reply = await uploads.upload_reply(
            kind, authorization=_header(scope, b"authorization") or "",
            content_encoding=_header(scope, b"content-encoding") or "", body=body,
        )
        await _send(send, reply)

    async def _serve(self, environment: str, scope, receive, send, *, part: str = "") -> None:
        request = bundle_reply(
            environment,
            part=part,
            authorization=_header(scope, b"authorization") or "",
            if_none_match=_header(scope, b"if-none-match"),
            prefer=_header(scope, b"prefer"),
            query_string=scope.get("query_string", b"").decode("latin-1"),
        )
        if long_poll_wait(_header(scope, b"prefer")) is None:
            reply = await request
        else:
            # A held poll ends when its client goes away, instead of at the wait's end.
            reply = await _unless_disconnected(request, receive)
            if reply is None:
                return
        await _send(send, reply)


async def _read_body(scope, receive, max_bytes: int) -> bytes:
    """The request body, refused beyond `max_bytes` before more than that is read."""
    declared = _header(scope, b"content-length") or ""
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"the request body is {declared} bytes; the limit is {max_bytes} bytes")
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError
        body += message.get("body", b"")
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"the request body is over the limit of {max_bytes} bytes")
        if not message.get("more_body"):
            return bytes(body)


async def _unless_disconnected(coroutine, receive) -> Reply | None:
    """`await coroutine` in this task, or None once the client has gone away: a watcher
    (the one task a held poll adds) cancels this task on `http.disconnect`."""
    request = asyncio.current_task()
    if request is None:  # not in a task: nothing to cancel (ASGI servers always run one)
        return await coroutine
    gone = False

    async def watch():
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        request.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await coroutine
    except asyncio.CancelledError:
        if not gone:
            raise  # cancelled from outside (shutdown): not ours to swallow
        request.uncancel()
        return None
    finally:
        watcher.cancel()


async def _send(send, reply: Reply) -> None:
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers.items()]
    headers.append((b"content-length", str(reply.content_length).encode("ascii")))
    headers.append((b"x-content-type-options", b"nosniff"))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    # Chunk by chunk (a snapshot's gzip members, shared with the archive cache): the server
    # waits for the client to drain each, so a fleet woken at once buffers no copy per poll.
    chunks = reply.chunks
    for index, chunk in enumerate(chunks):
        await send({"type": "http.response.body", "body": chunk, "more_body": index + 1 < len(chunks)})
