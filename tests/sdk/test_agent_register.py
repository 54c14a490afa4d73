"""`warden agent register` against a live control plane, in a fresh interpreter: the agent
and its public key are registered, a second run is a no-op, and refusals name the cause."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents_sdk.identity import AgentIdentity
from controlplane.identity.models import Agent

pytestmark = pytest.mark.django_db(transaction=True)

REPO_ROOT = Path(__file__).resolve().parents[2]


def warden(*args: str, token: str | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "WARDEN_API_TOKEN"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if token is not None:
        env["WARDEN_API_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "agents_sdk", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=60, check=False)


def test_register_creates_the_agent_and_its_key_and_is_safe_to_repeat(control_plane, api_token, prod, tmp_path):
    identity = AgentIdentity.create("files-gateway", "ops@example.com", ["read:files"])
    identity.save(tmp_path / "agent.key", passphrase="not-needed-for-registering")
    args = ("agent", "register", "agent.key", "--url", control_plane.url, "--environment", prod.name)

    first = warden(*args, token=api_token, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["agent files-gateway: registered", f"key {identity.key_id}: registered"]
    agent = Agent.objects.get(name="files-gateway")
    assert list(agent.keys.values_list("key_id", flat=True)) == [identity.key_id]
    assert agent.scopes == ["read:files"] and agent.owner_email == "ops@example.com"

    again = warden(*args, token=api_token, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "agent files-gateway: already registered (left unchanged)",
        f"key {identity.key_id}: already registered",
    ]
    assert agent.keys.count() == 1


def test_a_key_of_another_agent_is_refused(control_plane, api_token, prod, tmp_path):
    identity = AgentIdentity.create("billing-bot", "ops@example.com", ["read:tickets"])
    identity.register(control_plane.url, api_token)
    # The same key under another agent's name (a copied metadata file, edited):
    metadata = (tmp_path / "copy.key.json")
    identity.save(tmp_path / "copy.key")
    metadata.write_text(metadata.read_text().replace('"billing-bot"', '"other-bot"'))
    done = warden("agent", "register", str(metadata), "--url", control_plane.url, token=api_token, cwd=tmp_path)
    assert done.returncode == 1
    assert "is registered for another agent, not 'other-bot'" in done.stderr


def test_without_a_token_or_with_a_wrong_one_nothing_is_registered(control_plane, api_token, tmp_path):
    AgentIdentity.create("support-bot", "a@example.com", []).save(tmp_path / "agent.key")
    missing = warden("agent", "register", "agent.key", "--url", control_plane.url, token=None, cwd=tmp_path)
    assert missing.returncode == 2 and "WARDEN_API_TOKEN is not set" in missing.stderr
    wrong = warden("agent", "register", "agent.key", "--url", control_plane.url, token="wrong", cwd=tmp_path)
    assert wrong.returncode == 1 and "failed with 401" in wrong.stderr
    assert not Agent.objects.filter(name="support-bot").exists()


def test_a_file_that_is_not_an_identity_is_a_usage_error(control_plane, api_token, tmp_path):
    (tmp_path / "x.json").write_text('{"name": "\\ud800"}')
    done = warden("agent", "register", "x.json", "--url", control_plane.url, token=api_token, cwd=tmp_path)
    assert done.returncode == 2 and "not a Warden identity metadata file" in done.stderr
