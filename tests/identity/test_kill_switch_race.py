"""The kill switch on the embedded default (SQLite, eager tasks, one uvicorn process), under
concurrent decision-log uploads: 100 suspensions and resumptions, each either answered 200
with the revision that carries it, which a live engine long-polling the bundle service then
runs, or refused visibly (4xx/5xx with a message). Before WAL, a busy timeout and delivery
in the request, 5 of 35 calls answered `500 database is locked` and some resumes answered
200 while the rebuild had failed."""

import gzip
import io
import json
import logging
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 100
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the report
DELIVERY_DEADLINE = 30.0  # a failure bound, not a measured figure

SETUP = """
import json
import logging
from controlplane.accounts import services as accounts
from controlplane.bundles import services as bundles
from controlplane.identity import services as identity
from tests.accounts.factories import UserFactory
admin = UserFactory(username="race-admin", roles=["admin"])
_, api_token = accounts.create_token(user=admin, name="race", by=admin)
identity.register_agent(name="bot", owner_email="bot@example.com", environments=["dev"], by=admin)
dev = bundles.create_environment(name="dev", by=admin)
# Built without running the library's policy tests: this test is about delivery, not policy.
from tests.bundles.factories import built_bundle
built_bundle(dev, by=admin, reason="race test")
_, env_token = bundles.create_environment_token(dev, name="engine", by=admin)
print(json.dumps({"api": api_token, "env": env_token}))
"""


def embedded_env(var_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARDEN_", "DATABASE_URL", "REDIS_URL"))}
    env.update({"WARDEN_VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "controlplane.settings"})
    return env


def read_bundle(archive: bytes) -> tuple[str, str, dict]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        files = {m.name.lstrip("/"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    manifest = json.loads(files[".manifest"])
    data = json.loads(files["data.json"])
    return manifest["revision"], manifest["metadata"]["warden"]["built_at"], data["warden_registry"]["agents"]


class LiveEngine(threading.Thread):
    """Long-polls the bundle service as OPA does and reports its revision in status reports."""

    def __init__(self, base: str, token: str):
        super().__init__(daemon=True)
        self.base, self.token = base, token
        self.seen: dict[str, str] = {}  # revision -> status of "bot" in it
        # (monotonic time, revision) per bundle received: revisions repeat (suspend, resume, suspend…).
        self.received: list[tuple[float, str]] = []
        self.built_at: list[str] = []
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.condition = threading.Condition()

    def run(self):
        etag = None
        instance = str(uuid.uuid4())
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while not self.stop.is_set():
                headers = {"Authorization": f"Bearer {self.token}", "Prefer": "modes=snapshot,delta;wait=5"}
                if etag:
                    headers["If-None-Match"] = etag
                try:
                    response = client.get("/opa/bundles/dev", headers=headers)
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                if response.status_code == 304:
                    continue
                if response.status_code != 200:
                    self.errors.append(f"bundle GET {response.status_code}")
                    continue
                etag = response.headers["ETag"]
                revision, built_at, agents = read_bundle(response.content)
                with self.condition:
                    self.received.append((time.monotonic(), revision))
                    self.seen[revision] = agents["bot"]["status"]
                    self.built_at.append(built_at)
                    self.condition.notify_all()
                report = {"labels": {"id": instance, "version": "1.4.2"},
                          "bundles": {"dev": {"name": "dev", "active_revision": revision}}}
                client.post("/opa/status", json=report, headers={"Authorization": f"Bearer {self.token}"})

    def received_since(self, revision: str, since: float, deadline: float) -> float | None:
        """When the engine received `revision` at or after `since` (None: not within `deadline` s)."""
        def first():
            return next((t for t, r in self.received if r == revision and t >= since), None)

        with self.condition:
            self.condition.wait_for(lambda: first() is not None, timeout=deadline)
            return first()

    def wait_for(self, revision: str, deadline: float) -> str | None:
        with self.condition:
            self.condition.wait_for(lambda: revision in self.seen, timeout=deadline)
            return self.seen.get(revision)


class Uploader(threading.Thread):
    def __init__(self, base: str, token: str):
        super().__init__(daemon=True)
        self.base, self.token = base, token
        self.stop = threading.Event()
        self.statuses: dict[int, int] = {}

    def run(self):
        with httpx.Client(base_url=self.base, timeout=60) as client:
            while not self.stop.is_set():
                events = [
                    {"labels": {"id": "uploader"}, "decision_id": str(uuid.uuid4()), "path": "warden/decision",
                     "input": {"agent": {"id": "bot"}}, "result": {"allow": True}, "timestamp": "2026-01-01T00:00:00Z"}
                    for _ in range(20)
                ]
                body = gzip.compress(json.dumps(events).encode())
                response = client.post(
                    "/opa/logs", content=body,
                    headers={"Authorization": f"Bearer {self.token}", "Content-Encoding": "gzip",
                             "Content-Type": "application/json"},
                )
                self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1


@pytest.fixture
def embedded_server(tmp_path):
    env = embedded_env(tmp_path)
    python = sys.executable
    migrate = subprocess.run([python, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert migrate.returncode == 0, migrate.stderr
    setup = subprocess.run([python, "manage.py", "shell", "-c", SETUP], cwd=ROOT, env=env, capture_output=True, text=True)
    assert setup.returncode == 0, setup.stderr
    tokens = json.loads(setup.stdout.strip().splitlines()[-1])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [python, "-m", "uvicorn", "controlplane.asgi:application", "--fd", str(listener.fileno()),
         "--lifespan", "on", "--log-level", "warning"],
        cwd=ROOT, env=env, pass_fds=[listener.fileno()], stdout=log, stderr=subprocess.STDOUT,
    )
    listener.close()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield base, tokens, tmp_path / "server.log"
    server.terminate()
    server.wait(timeout=20)
    log.close()


@pytest.mark.slow
def test_kill_switch_under_concurrent_uploads_is_delivered_or_fails_visibly(embedded_server):
    base, tokens, server_log = embedded_server
    # `make run` serves with --lifespan on: the periodic jobs run in the web process.
    started = [line for line in server_log.read_text().splitlines() if "in-process jobs started" in line]
    assert started and "reconcile-bundles" in started[0] and "audit-requeue-stale-batches" in started[0]
    engine = LiveEngine(base, tokens["env"])
    uploaders = [Uploader(base, tokens["env"]) for _ in range(2)]
    engine.start()
    for uploader in uploaders:
        uploader.start()
    delivered, visible_failures, silent = 0, [], []
    to_deny: list[float] = []
    try:
        with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Token {tokens['api']}"}) as api:
            for round_ in range(ROUNDS):
                action, expected = ("suspend", "suspended") if round_ % 2 == 0 else ("resume", "active")
                pulled = time.monotonic()
                response = api.post(f"/api/v1/agents/bot/{action}/", json={"reason": f"drill {round_}"})
                if response.status_code != 200:
                    body = response.json()
                    assert response.status_code != 500, body
                    assert body, "a failure must say what went wrong"
                    visible_failures.append((round_, response.status_code, body))
                    continue
                body = response.json()
                assert body["status"] == expected
                [report] = body["delivery"]
                assert report["environment"] == "dev" and report["built_at"]
                if engine.wait_for(report["revision"], DELIVERY_DEADLINE) == expected:
                    delivered += 1
                    if action == "suspend":  # drill time-to-deny: from the switch to the engine holding it
                        received = engine.received_since(report["revision"], pulled, DELIVERY_DEADLINE)
                        if received is not None:
                            to_deny.append(received - pulled)
                else:
                    silent.append((round_, report["revision"]))
    finally:
        engine.stop.set()
        for uploader in uploaders:
            uploader.stop.set()
        engine.join(15)
        for uploader in uploaders:
            uploader.join(70)
    upload_statuses = {}
    for uploader in uploaders:
        for code, count in uploader.statuses.items():
            upload_statuses[code] = upload_statuses.get(code, 0) + count
    print(f"\nkill switch race: {ROUNDS} calls, {delivered} delivered to the live engine, "
          f"{len(visible_failures)} visible failures, {len(silent)} silent; uploads by status {upload_statuses}; "
          f"engine errors {len(engine.errors)}")
    if to_deny:
        ordered = sorted(to_deny)
        print(f"kill switch drill time-to-deny (suspend call until a long-polling engine holds the bundle that "
              f"marks the agent suspended), {len(ordered)} drills: median {ordered[len(ordered) // 2]:.3f} s, "
              f"p95 {ordered[int(len(ordered) * 0.95) - 1]:.3f} s, max {ordered[-1]:.3f} s")
    assert silent == [], "a 200 whose revision never reached the engine"
    assert delivered + len(visible_failures) == ROUNDS
    assert set(upload_statuses) <= {200}, upload_statuses
    assert sum(upload_statuses.values()) > 0
    assert engine.built_at == sorted(engine.built_at), "build times only move forward"
