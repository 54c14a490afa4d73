"""LangChain 1.x: a code tool that runs model-written Python in the bubblewrap sandbox, with
the shipped policy deciding first and every run in the signed log."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain.agents")

from langchain.agents import create_agent
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool

from agents_sdk.guard import EmbeddedBackend, Guard
from agents_sdk.identity import AgentIdentity
from agents_sdk.integrations.tests.policy import kinds, registry, signed_log
from agents_sdk.integrations.tests.test_langchain import script
from agents_sdk.records import ActionSigner
from agents_sdk.sandbox import Permissions
from agents_sdk.sandbox.governed import python_tool
from agents_sdk.tests.sandbox_fixtures import make_host_tree, remove_host_tree
from agents_sdk.tests.signed_bundles import library_modules


@pytest.fixture
def tree():
    host = make_host_tree()
    yield host
    remove_host_tree(host)


def coder(tree, *, scopes=("exec:code",), allow_hosts=()) -> Guard:
    """coder-bot: may run code (exec:code); its sandbox reads tree.read and writes tree.write."""
    data = registry(extra_tools={"run_python": {"scopes": ["exec:code"], "category": "other"}})
    data["warden_registry"]["agents"]["coder-bot"] = {
        "status": "active",
        "owner": "alice@example.com",
        "scopes": list(scopes),
        "egress": {"allow_hosts": list(allow_hosts)},
        "shell": {"allow_commands": ["python3"]},
        "sandbox": {"file_read": [str(tree.read)], "file_write": [str(tree.write)], "limits": {"wall_seconds": 20}},
    }
    identity = AgentIdentity.create("coder-bot", "alice@example.com", list(scopes))
    backend = EmbeddedBackend.from_modules(library_modules(), data)
    return Guard(identity, backend, environment="prod", session_id="s-1", signer=ActionSigner(identity))


def run_agent(guard: Guard, *codes: str) -> list[ToolMessage]:
    agent = create_agent(script(*(("run_python", {"code": code}) for code in codes)), tools=[tool(python_tool(guard))])
    result = agent.invoke({"messages": [{"role": "user", "content": "work it out in Python"}]})
    assert result["messages"][-1].content == "done"
    return [m for m in result["messages"] if isinstance(m, ToolMessage)]


def test_model_written_python_runs_in_the_sandbox_and_each_run_is_signed(tree):
    guard = coder(tree)
    code = (
        f"text = open('{tree.read}/data.txt').read()\n"
        f"open('{tree.write}/report.txt', 'w').write(text.upper())\n"
        "print(len(text.split()), 'words')"
    )
    (message,) = run_agent(guard, code)
    assert message.content == "2 words\n\n[exit status 0]"
    assert (tree.write / "report.txt").read_text() == "ALLOWED DATA\n"
    records = signed_log(guard)
    assert kinds(records) == [
        ("intent", "run_python", {"code": code}),
        ("decision", "allow", []),
        ("result", "run_python"),
    ]
    run = records[2]["payload"]["sandbox"]
    profile = Permissions.from_registry(guard.backend.policy.data["warden_registry"]["agents"]["coder-bot"])
    assert run["command"] == ["python3", "-I", "-c", code]
    assert run["profile_hash"] == profile.profile_hash and run["exit_status"] == 0


def test_model_written_escapes_fail_inside_and_the_model_reads_why(tree):
    guard = coder(tree)
    steal = f"print(open('{tree.secret}').read())"
    pivot = "import socket; socket.create_connection(('127.0.0.1', 5432), timeout=2)"
    messages = run_agent(guard, steal, pivot)
    assert "FileNotFoundError" in messages[0].content and "[exit status 1]" in messages[0].content
    assert "ConnectionRefusedError" in messages[1].content
    runs = [r["payload"]["sandbox"] for r in signed_log(guard) if r["kind"] == "result"]
    assert [run["exit_status"] for run in runs] == [1, 1]


def test_a_refused_connection_through_the_proxy_is_a_signed_violation(tree):
    guard = coder(tree, allow_hosts=["pypi.org"])
    code = (
        "import os, socket; s = socket.socket(socket.AF_UNIX); s.connect(os.environ['WARDEN_EGRESS_SOCKET'])\n"
        "s.sendall(b'CONNECT 2130706433:6379 HTTP/1.1\\r\\n\\r\\n'); print(s.recv(64))"
    )
    (message,) = run_agent(guard, code)
    assert message.content.startswith("refused: sandbox-egress-refused: 2130706433:6379")
    run = signed_log(guard)[-1]["payload"]["sandbox"]
    assert run["violations"][0]["target"] == "2130706433:6379"


def test_an_agent_the_policy_denies_never_gets_a_sandbox(tree):
    guard = coder(tree, scopes=("read:files",))
    marker = tree.write / "ran"
    (message,) = run_agent(guard, f"open('{marker}', 'w')")
    assert message.content.startswith("refused: missing-scope: Tool run_python requires scope exec:code")
    assert not marker.exists()
    assert [kind for kind, *_ in kinds(signed_log(guard))] == ["intent", "decision"]
