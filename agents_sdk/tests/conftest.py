"""Fixtures for the SDK's own tests; plain pytest, no Django."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """After a module's last test, once its module-scoped fixtures are torn down, collect the
    garbage they leave in this (the main) thread. Engine sessions a test made (regorus' objects
    may only be dropped by the thread that made them) would otherwise wait in pytest's
    reference cycles for a collection that may run on a sidecar's or worker's thread: regorus
    then leaks them and reports "unsendable, but is being dropped on another thread"."""
    yield
    if nextitem is None or nextitem.module is not item.module:  # type: ignore[attr-defined]
        gc.collect()


@pytest.fixture
def identity() -> AgentIdentity:
    return AgentIdentity.create("billing-bot", "payments-team@example.com", ["read:tickets", "write:refunds"])


@pytest.fixture
def other_identity() -> AgentIdentity:
    return AgentIdentity.create("billing-bot", "payments-team@example.com", ["read:tickets"])


def sign_session(signer: ActionSigner, session_id: str, tool: str = "file_read") -> None:
    with signer.session(session_id=session_id) as session:
        session.intent(tool, {"path": "/srv/tickets/4711.json"})
        session.decision("allow", reasons=[{"rule": "allow-reads", "message": "reads are allowed", "controls": []}])
        session.result("read 1 file, 2 KiB")
        session.output("Ticket 4711 is about a refund of 12,50 €.")


@pytest.fixture
def signed_log(identity: AgentIdentity) -> list[dict]:
    """Two interleaved sessions, four records each."""
    signer = ActionSigner(identity)
    with signer.session(session_id="session-a") as a, signer.session(session_id="session-b") as b:
        for session in (a, b):
            session.intent("file_read", {"path": "/srv/tickets/4711.json"})
        for session in (a, b):
            session.decision("allow", reasons=[])
        a.result("read 1 file")
        b.result("read 1 file")
        a.output("done")
        b.output("fertig ✓")
    return signer.session_log()


def run_warden(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m agents_sdk ARGS`` in a fresh interpreter."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "agents_sdk", *args],
        check=False,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or REPO_ROOT,
        timeout=60,
    )
