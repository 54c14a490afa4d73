"""Three agents in three processes, orchestrator → researcher → executor, against a live
control plane and a `warden sidecar` process: the executor is allowed only within the scopes
the chain narrowed to, denied beyond them, refused for a forged chain (recorded in the
decision log), and denied everywhere once the orchestrator is suspended."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agents_sdk.delegation import decode_chain, encode_chain, grant_hash
from agents_sdk.identity import AgentIdentity
from controlplane.bundles import services as bundle_services
from controlplane.opa.models import DecisionLog
from controlplane.policies import services as policy_services
from tests.bundles.factories import built_bundle

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
AGENT = str(Path(__file__).with_name("agent_process.py"))
SCOPES = ["read:docs", "read:tickets", "write:files"]


def free_port() -> int:
    with socket.socket() as probe:  # the OS picks: safe beside other test workers
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    return env


def delegate(key_file, audience: AgentIdentity, session, scopes, constraints, parent=None) -> str:
    args = [sys.executable, AGENT, "delegate", str(key_file), audience.name, audience.key_id, session,
            json.dumps(scopes), "null", json.dumps(constraints)] + ([parent] if parent else [])
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, env=child_env(), check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class Executor:
    def __init__(self, key_file, sidecar_url, session, token):
        self.process = subprocess.Popen(
            [sys.executable, AGENT, "act", str(key_file), sidecar_url, session, token],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
        )
        assert self.process.stdout.readline().strip() == "ready", self.process.stderr.read()

    def call(self, tool, args, **extra) -> dict:
        self.process.stdin.write(json.dumps({"tool": tool, "args": args, **extra}) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def stop(self):
        self.process.stdin.close()
        self.process.wait(10)


def rules(answer: dict) -> set[str]:
    return {r["rule"] for r in answer["reasons"]}


def test_executor_is_held_to_the_narrowed_chain_and_stopped_when_the_orchestrator_is_suspended(
    control_plane, admin, api_token, tmp_path
):
    httpx.get(f"{control_plane.url}/healthz", timeout=120)  # the first request loads the application: slow under load
    api = httpx.Client(base_url=f"{control_plane.url}/api/v1", headers={"Authorization": f"Token {api_token}"}, timeout=30)
    for name, scopes, category in [("doc_search", ["read:docs"], "other"), ("ticket_read", ["read:tickets"], "other"),
                                   ("file_write", ["write:files"], "file")]:
        policy_services.create_tool(name=name, scopes=scopes, category=category, by=admin)
    agents, key_files = {}, {}
    for name in ("orchestrator", "researcher", "executor"):
        agents[name] = AgentIdentity.create(name, "team@example.com", SCOPES)
        key_files[name] = agents[name].save(tmp_path / f"{name}.pem")
        agents[name].register(control_plane.url, api_token, environments=["prod"])
    for issuer, audience in (("orchestrator", "researcher"), ("researcher", "executor")):
        answer = api.put(f"/delegation/rules/{issuer}/", json={"may_delegate_to": [audience], "max_depth": 3})
        assert answer.status_code == 200, answer.text
    # The environment last: registry changes before it rebuild no bundle.
    prod = bundle_services.create_environment(name="prod", by=admin)
    _, env_token = bundle_services.create_environment_token(prod, name="sidecar", by=admin)
    built_bundle(prod, by=admin, reason="three agents")  # the library's own tests run in rego-test
    (key,) = [k for k in api.get("/signing-keys/").json()["results"] if k["is_active"]]

    port = free_port()
    config = tmp_path / "sidecar.json"
    config.write_text(json.dumps({
        "services": {"warden": {"url": f"{control_plane.url}/opa", "credentials": {"bearer": {"token": env_token}}}},
        "keys": {key["kid"]: {"algorithm": "RS256", "key": key["public_key_pem"]}},
        "bundles": {"prod": {"service": "warden", "resource": "bundles/prod", "signing": {"keyid": key["kid"]},
                             "polling": {"long_polling_timeout_seconds": 20}}},
        "decision_logs": {"service": "warden", "reporting": {"min_delay_seconds": 1, "max_delay_seconds": 1}},
    }))
    sidecar = subprocess.Popen([sys.executable, "-m", "agents_sdk", "sidecar", "--config", str(config),
                                "--addr", f"127.0.0.1:{port}"], env=child_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    executor = None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("the sidecar never became healthy")

        # orchestrator → researcher: docs and files under /data/; researcher → executor: narrower.
        first = delegate(key_files["orchestrator"], agents["researcher"], "s-res",
                         ["read:docs", "write:files"], {"path_prefix": "/data/"})
        token = delegate(key_files["researcher"], agents["executor"], "s-exe",
                         ["read:docs", "write:files"], {"path_prefix": "/data/reports/"}, parent=first)
        assert [g["iss"] for g in decode_chain(token)] == ["orchestrator", "researcher"]
        executor = Executor(key_files["executor"], f"http://127.0.0.1:{port}", "s-exe", token)

        assert executor.call("doc_search", {"query": "q"})["effect"] == "allow"
        assert executor.call("file_write", {"path": "/data/reports/q1.txt", "content": "x"})["effect"] == "allow"
        assert "delegation-scope" in rules(executor.call("ticket_read", {"id": 7}))
        assert "delegation-path" in rules(executor.call("file_write", {"path": "/data/secret.txt", "content": "x"}))
        # Its own registry scopes are not reachable through the chain, but are without one.
        assert executor.call("ticket_read", {"id": 7}, token=None)["effect"] == "allow"

        # A researcher link that widens scopes, re-signed by nobody: refused naming link and check.
        chain = decode_chain(token)
        chain[1]["scopes"] = ["read:docs", "read:tickets", "write:files"]
        forged = executor.call("ticket_read", {"id": 7}, token=encode_chain(chain))
        assert rules(forged) == {"delegation-invalid"}
        assert "link 2 (researcher → executor): signature" in forged["reasons"][0]["message"]
        # A grant replayed in another session.
        replay = Executor(key_files["executor"], f"http://127.0.0.1:{port}", "s-other", token)
        replayed = replay.call("doc_search", {"query": "q"})
        replay.stop()
        assert rules(replayed) == {"delegation-invalid"} and ": session:" in replayed["reasons"][0]["message"]

        # Revoking one grant stops the chains through it, and only those.
        spare = delegate(key_files["researcher"], agents["executor"], "s-exe", ["read:docs"], {"path_prefix": "/data/"},
                         parent=first)
        assert executor.call("doc_search", {"query": "q"}, token=spare)["effect"] == "allow"
        clicked = time.monotonic()
        revoked = api.post("/delegation/revocations/", json={"grant_hash": grant_hash(decode_chain(spare)[-1]),
                                                             "reason": "test"})
        assert revoked.status_code == 201, revoked.text
        answered = time.monotonic() - clicked
        refusal = executor.call("doc_search", {"query": "q"}, token=spare)
        while refusal["effect"] == "allow" and time.monotonic() - clicked < 30:
            time.sleep(0.01)
            refusal = executor.call("doc_search", {"query": "q"}, token=spare)
        print(f"\nrevoked chain denied {(time.monotonic() - clicked) * 1000:.0f} ms after the revocation "
              f"(API answered in {answered * 1000:.0f} ms; load average {os.getloadavg()[0]:.1f})")
        assert rules(refusal) == {"delegation-invalid"} and ": revoked" in refusal["reasons"][0]["message"]
        assert executor.call("doc_search", {"query": "q"})["effect"] == "allow"

        # The kill switch on the orchestrator reaches the executor two links below it.
        clicked = time.monotonic()
        assert api.post("/agents/orchestrator/suspend/", json={"reason": "test"}).status_code == 200
        answer = executor.call("doc_search", {"query": "q"})
        while answer["effect"] == "allow" and time.monotonic() - clicked < 30:
            time.sleep(0.01)
            answer = executor.call("doc_search", {"query": "q"})
        waited = time.monotonic() - clicked
        print(f"\nexecutor denied {waited * 1000:.0f} ms after the orchestrator was suspended "
              f"(load average {os.getloadavg()[0]:.1f})")
        assert "delegation-agent-not-active" in rules(answer)
        for tool, args in [("file_write", {"path": "/data/reports/q1.txt", "content": "x"}), ("doc_search", {})]:
            assert executor.call(tool, args)["effect"] == "deny"

        # Every refusal is recorded in the decision log, with the verified chain when there was one.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            logs = list(DecisionLog.objects.filter(environment=prod).order_by("timestamp"))
            if any("delegation-agent-not-active" in json.dumps(log.result) for log in logs):
                break
            time.sleep(0.2)
        refused = [log for log in logs if "delegation-invalid" in json.dumps(log.result)]
        assert any("signature" in json.dumps(log.result) for log in refused)
        assert any("session" in json.dumps(log.result) for log in refused)
        allowed = [log for log in logs if log.result and log.result.get("effect") == "allow" and log.input.get("delegation")]
        assert allowed and allowed[0].input["delegation"]["chain"] == ["orchestrator", "researcher", "executor"]
        assert all("delegation" not in (log.input or {}).get("context", {}) for log in logs)  # the raw chain never
    finally:
        if executor is not None:
            executor.stop()
        sidecar.terminate()
        sidecar.wait(10)
