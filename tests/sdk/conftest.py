"""A real control plane for the SDK: the project's ASGI application under uvicorn on a free
127.0.0.1 port, in a background thread, over the test database (transactional tests, so
the server's own threads see committed data)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn
from django.db import connections

from controlplane.accounts import services as account_services
from controlplane.bundles import services as bundle_services
from controlplane.opa.authentication import forget_cached_tokens
from controlplane.opa.database import close_db_connections
from controlplane.opa.selectors import forget_cached_bundles
from controlplane.policies import services as policy_services
from tests.accounts.factories import UserFactory


def _application():
    from controlplane.asgi import application
    from controlplane.opa.asgi import BundleServiceFastPath

    # As deployed: the bundle fast path in front of Django (installed here if asgi.py lacks it).
    return application if isinstance(application, BundleServiceFastPath) else BundleServiceFastPath(application)


class LiveControlPlane:
    """The server, and with a Redis broker a thread that stores queued status reports and
    decision logs as the Celery task `opa.ingest_uploads` does (controlplane.opa.uploads)."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(_application(), host="127.0.0.1", port=self.port, lifespan="off", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self._stopping = threading.Event()
        self.drainer = threading.Thread(target=self._drain_uploads, daemon=True)

    def _drain_uploads(self) -> None:
        from controlplane.opa import uploads

        if not uploads.enabled():
            return  # eager: the requests store their uploads themselves
        try:
            while not self._stopping.wait(0.05):
                uploads.drain(max_seconds=1)
        finally:
            connections.close_all()  # this thread's own connection: the test database is dropped later

    def wait_for_uploads(self, timeout: float = 15) -> None:
        """Return once every status report and decision log the server queued is stored."""
        from controlplane.opa import uploads

        deadline = time.monotonic() + timeout
        while uploads.enabled() and uploads.queued() > 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"{uploads.queued()} uploads still queued after {timeout} s")
            time.sleep(0.05)

    def start(self) -> LiveControlPlane:
        self.thread.start()
        self.drainer.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the control plane did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.drainer.join(10)
        self.server.should_exit = True
        self.server.force_exit = True  # long polls in flight are cut, as in an outage
        self.thread.join(10)


@pytest.fixture
def control_plane(transactional_db, settings):
    forget_cached_tokens()
    forget_cached_bundles()
    live = LiveControlPlane().start()
    yield live
    live.stop()
    close_db_connections()  # PostgreSQL keeps no connection of the server's threads open
    forget_cached_tokens()
    forget_cached_bundles()


@pytest.fixture
def admin(transactional_db):
    return UserFactory(username="sdk-admin", roles=["admin"])


@pytest.fixture
def api_token(admin) -> str:
    return account_services.create_token(user=admin, name="sdk", by=admin)[1]


@pytest.fixture
def prod(admin):
    """The prod environment with the tools the examples call, and its bearer token."""
    for name, scopes, category in [
        ("ticket_read", ["read:tickets"], "other"),
        ("file_delete", ["write:files"], "file"),
        ("http_request", ["net:http"], "network"),
    ]:
        policy_services.create_tool(name=name, scopes=scopes, category=category, by=admin)
    environment = bundle_services.create_environment(name="prod", by=admin)
    _, token = bundle_services.create_environment_token(environment, name="sdk", by=admin)
    environment.token = token
    return environment
