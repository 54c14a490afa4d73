"""An emulated OPA talking HTTP to the real ASGI application in-process, with the headers
OPA's downloader and plugins send (v1/download/download.go, v1/plugins/*)."""

from __future__ import annotations

import asyncio
import gzip
import json

import httpx
from django.db import connections

from controlplane.asgi import application as project_application
from controlplane.opa.asgi import BundleServiceFastPath

# As deployed: the bundle fast path in front of Django (if controlplane/asgi.py does not
# install it yet, the tests install it). DJANGO_ONLY skips it, to test the Django views.
FAST_PATH = (
    project_application
    if isinstance(project_application, BundleServiceFastPath)
    else BundleServiceFastPath(project_application)
)
DJANGO_ONLY = project_application.app if isinstance(project_application, BundleServiceFastPath) else project_application

OPA_USER_AGENT = "Open Policy Agent/1.4.2 (linux, amd64)"
# No test may hang: every request is abandoned after this many seconds.
REQUEST_DEADLINE = 20


def asgi_client(app=FAST_PATH) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def in_thread(func, /, *args, **kwargs):
    """Run Django ORM code (a service) from a test's event loop, as another process would."""

    def call():
        try:
            return func(*args, **kwargs)
        finally:
            connections.close_all()

    return await asyncio.to_thread(call)


class EmulatedOPA:
    """One OPA instance's bundle downloader: remembers the ETag and sends it back."""

    def __init__(self, client: httpx.AsyncClient, *, token: str, resource: str):
        self.client = client
        self.token = token
        self.resource = resource
        self.etag = ""

    def headers(self, *, wait: int | None = None) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "User-Agent": OPA_USER_AGENT,
            # Go's transport asks for gzip on every request; a bundle must still come back
            # without Content-Encoding.
            "Accept-Encoding": "gzip",
            "Prefer": "modes=snapshot,delta" if wait is None else f"modes=snapshot,delta;wait={wait}",
        }
        if self.etag:  # OPA never sends an empty If-None-Match
            headers["If-None-Match"] = self.etag
        return headers

    async def download(self, *, wait: int | None = None) -> httpx.Response:
        response = await asyncio.wait_for(
            self.client.get(f"/opa/{self.resource}", headers=self.headers(wait=wait)), REQUEST_DEADLINE
        )
        if response.status_code in (200, 304) and response.headers.get("ETag"):
            self.etag = response.headers["ETag"]
        return response

    async def upload_logs(self, events: list[dict]) -> httpx.Response:
        # The size buffer encodes each event with json.Encoder: a newline after each one.
        body = ("[" + ",".join(json.dumps(e) + "\n" for e in events) + "]").encode()
        return await self.post("/opa/logs", gzip.compress(body), gzipped=True)

    async def post(self, path: str, body: bytes, *, gzipped: bool = False) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", "User-Agent": OPA_USER_AGENT,
                   "Content-Type": "application/json"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return await asyncio.wait_for(self.client.post(path, content=body, headers=headers), REQUEST_DEADLINE)


def run(coroutine):
    """Run one scenario on a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coroutine, 60))
