"""Several web processes: a change made through one wakes a long poll held by another
(Redis pub/sub, one subscription per process), as the reference topology in docs/scale.md
runs them behind a load balancer."""

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from controlplane.accounts import services as account_services

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not settings.REDIS_URL or connection.vendor != "postgresql",
    reason="web processes share PostgreSQL and Redis",
)


def _web_process(tmp_path, name: str):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    database = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_CELERY")}
    env.update(DATABASE_URL=f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
               REDIS_URL=settings.REDIS_URL, DJANGO_SETTINGS_MODULE="controlplane.settings")
    log = (tmp_path / f"{name}.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "controlplane.asgi:application", "--fd", str(listener.fileno()),
         "--lifespan", "off", "--log-level", "warning"],
        cwd=ROOT, env=env, pass_fds=[listener.fileno()], stdout=log, stderr=subprocess.STDOUT,
    )
    listener.close()
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return server, base, log
        except httpx.HTTPError:
            if server.poll() is not None:
                break
            threading.Event().wait(0.2)
    server.kill()
    raise AssertionError(f"web process {name} did not start: {(tmp_path / f'{name}.log').read_text()[-2000:]}")


def test_a_web_process_warms_its_rebuild_caches_after_start(tmp_path, dev):
    """controlplane/asgi.py starts bundles.warmup: the first kill switch the process serves
    finds the policy set compiled and the signing key loaded (tests/bundles/test_warmup.py)."""
    server, _, log = _web_process(tmp_path, "web-warm")
    try:
        for _ in range(300):
            text = (tmp_path / "web-warm.log").read_text()
            if "rebuild caches" in text:
                break
            threading.Event().wait(0.2)
        assert "bundle rebuild caches warm for 1 environment(s)" in text, text[-2000:]
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


@pytest.fixture
def two_web_processes(tmp_path, dev):
    started = []
    try:
        for name in ("web-a", "web-b"):
            started.append(_web_process(tmp_path, name))
        yield [base for _, base, _ in started]
    finally:
        for server, _, log in started:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()


def test_a_suspension_made_through_one_web_process_wakes_a_long_poll_held_by_another(
    two_web_processes, dev, dev_token, agent, admin
):
    web_a, web_b = two_web_processes
    _, api_token = account_services.create_token(user=admin, name="kill switch", by=admin)
    bundle_headers = {"Authorization": f"Bearer {dev_token}"}
    first = httpx.get(f"{web_b}/opa/bundles/dev", headers=bundle_headers, timeout=30)
    assert first.status_code == 200
    old_etag = first.headers["ETag"]

    answer = {}
    held = threading.Event()

    def long_poll():
        with httpx.Client(timeout=120) as client:
            held.set()
            answer["response"] = client.get(f"{web_b}/opa/bundles/dev", headers={
                **bundle_headers, "If-None-Match": old_etag, "Prefer": "modes=snapshot,delta;wait=60"})

    poller = threading.Thread(target=long_poll)
    poller.start()
    held.wait()
    threading.Event().wait(1.0)  # let web B hold the poll (and subscribe) before the change
    assert "response" not in answer, "the long poll was answered before anything changed"

    suspended = httpx.post(f"{web_a}/api/v1/agents/{agent.name}/suspend/", timeout=60,
                           headers={"Authorization": f"Token {api_token}", "Content-Type": "application/json"},
                           content=json.dumps({"reason": "cross-process wake-up"}))
    assert suspended.status_code == 200, suspended.text
    poller.join(90)
    dev.refresh_from_db()
    response = answer["response"]
    # Not woken, web B would answer 304 when the 60 s wait ends.
    assert response.status_code == 200
    assert response.headers["ETag"] == dev.active_bundle.etag != old_etag
