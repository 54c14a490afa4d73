"""The Guard and the sandbox together: the shipped policy pack decides, the bundle's registry
entry shapes the sandbox, and every run is a signed record."""

from __future__ import annotations

import os
import shlex

import pytest

from agents_sdk.errors import PolicyViolationError
from agents_sdk.guard import EmbeddedBackend, Guard
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from agents_sdk.sandbox import Permissions, SandboxProfileError
from agents_sdk.sandbox.governed import SandboxedAgent
from agents_sdk.tests.sandbox_fixtures import make_host_tree, remove_host_tree
from agents_sdk.tests.signed_bundles import library_modules, registry
from agents_sdk.verify import verify_records


@pytest.fixture
def tree():
    host = make_host_tree()
    yield host
    remove_host_tree(host)


def bundle_data(tree, allow_hosts=(), **profile_changes) -> dict:
    data = registry()
    agents = data["warden_registry"]["agents"]
    agents["coder-bot"] = {
        "status": "active",
        "owner": "alice@example.com",
        "scopes": ["exec:code", "exec:shell"],
        "egress": {"allow_hosts": list(allow_hosts)},
        "shell": {"allow_commands": ["python3", "ls"]},
        "sandbox": {
            "file_read": [str(tree.read)],
            "file_write": [str(tree.write)],
            "limits": {"wall_seconds": 20, "memory_mb": 256},
            **profile_changes,
        },
    }
    agents["plain-bot"] = {"status": "active", "owner": "alice@example.com", "scopes": ["exec:code"]}
    data["warden_registry"]["tools"]["run_python"] = {"scopes": ["exec:code"], "category": "other"}
    data["warden_registry"]["tools"]["shell"] = {"scopes": ["exec:shell"], "category": "shell"}
    return data


def governed(tree, name="coder-bot", scopes=("exec:code", "exec:shell"), allow_hosts=(), **profile_changes):
    identity = AgentIdentity.create(name, "alice@example.com", list(scopes))
    signer = ActionSigner(identity)
    backend = EmbeddedBackend.from_modules(library_modules(), bundle_data(tree, allow_hosts, **profile_changes))
    return Guard(identity, backend, environment="prod", session_id="s-1", signer=signer), identity, signer


def test_allowed_python_runs_sandboxed_with_the_registry_profile_and_is_signed(tree):
    guard, identity, signer = governed(tree)
    agent = SandboxedAgent(guard)
    code = f"print(open('{tree.read}/data.txt').read().strip()); open('{tree.write}/out', 'w').write('ok')"
    result = agent.python(code)
    assert result.stdout == b"allowed data\n" and (tree.write / "out").read_text() == "ok"
    records = signer.session_log("s-1")
    assert [r["kind"] for r in records] == ["intent", "decision", "result"]
    run = records[2]["payload"]["sandbox"]
    expected = Permissions.from_registry(bundle_data(tree)["warden_registry"]["agents"]["coder-bot"])
    assert run == {
        "command": ["python3", "-I", "-c", code],
        "profile_hash": expected.profile_hash,
        "exit_status": 0,
        "limits_hit": [],
        "violations": [],
    }
    assert records[2]["payload"]["tool"] == "run_python"
    assert verify_records(records, {identity.key_id: identity.public_key_b64}).ok


def test_the_registry_profile_decides_what_the_sandbox_shows(tree):
    guard, _, _ = governed(tree, file_read=[], file_write=[])
    probe = f"import os; print(os.path.exists('{tree.read}'), os.path.exists('{tree.write}'))"
    assert SandboxedAgent(guard).python(probe).stdout == b"False False\n"
    guard, _, _ = governed(tree)
    assert SandboxedAgent(guard).python(probe).stdout == b"True True\n"


def test_a_denied_call_never_reaches_the_sandbox(tree):
    guard, _, signer = governed(tree, scopes=("exec:shell",))  # lacks exec:code
    marker = tree.write / "ran"
    with pytest.raises(PolicyViolationError) as raised:
        SandboxedAgent(guard).python(f"open('{marker}', 'w')")
    assert raised.value.rule == "missing-scope"
    assert not marker.exists()
    assert [r["kind"] for r in signer.session_log("s-1")] == ["intent", "decision"]


def test_guard_tool_with_sandbox_runs_the_returned_command_after_the_policy_allows_it(tree):
    guard, _, signer = governed(tree)

    @guard.tool(sandbox=True)
    def shell(command: str) -> list[str]:
        return shlex.split(command)

    listing = shell(f"ls {tree.read}")
    assert listing.stdout.decode().split() == ["data.txt", "to-secret"]
    with pytest.raises(PolicyViolationError, match="shell-not-allowlisted"):
        shell(f"rm -rf {tree.read}")
    with pytest.raises(PolicyViolationError, match="shell-metacharacters"):
        shell(f"ls {tree.read}; cat /etc/shadow")
    assert (tree.read / "data.txt").exists()
    kinds = [r["kind"] for r in signer.session_log("s-1")]
    assert kinds == ["intent", "decision", "result", "intent", "decision", "intent", "decision"]


def test_a_command_the_profile_does_not_allow_is_refused_and_recorded_even_if_the_policy_allowed(tree):
    guard, _, signer = governed(tree)
    agent = SandboxedAgent(guard)
    # run_python is allowed by policy, but the profile's commands do not include "sh".
    with pytest.raises(PolicyViolationError, match="sandbox-command-not-allowed"):
        agent.run(["sh", "-c", "id"], tool="run_python", args={"code": "id"})
    result = signer.session_log("s-1")[-1]
    assert result["kind"] == "result" and result["payload"]["summary"].startswith("refused: sandbox-command-not-allowed")
    assert result["payload"]["sandbox"]["violations"][0]["kind"] == "command"


def test_a_refused_connection_is_signed_then_raised(tree):
    guard, _, signer = governed(tree, allow_hosts=["*.example.com"])
    code = (
        "import os, socket; s = socket.socket(socket.AF_UNIX); s.connect(os.environ['WARDEN_EGRESS_SOCKET']);"
        "s.sendall(b'CONNECT 127.0.0.1:5432 HTTP/1.1\\r\\n\\r\\n'); print(s.recv(100).split(b'\\r\\n')[0].decode())"
    )
    with pytest.raises(PolicyViolationError, match="sandbox-egress-refused: 127.0.0.1:5432") as raised:
        SandboxedAgent(guard).python(code)
    assert raised.value.result.stdout == b"HTTP/1.1 403 Forbidden\n"
    run = signer.session_log("s-1")[-1]["payload"]["sandbox"]
    assert run["violations"] == [
        {"kind": "egress", "target": "127.0.0.1:5432", "reason": "127.0.0.1 is an IP address the allowlist does not name"}
    ]


def test_a_write_outside_file_write_is_signed_as_a_violation_then_raised(tree):
    guard, _, signer = governed(tree)
    with pytest.raises(PolicyViolationError, match="sandbox-write-outside-file-write: /etc/cron.d") as raised:
        SandboxedAgent(guard).python("import os; os.makedirs('/etc/cron.d'); open('/etc/cron.d/x', 'w').write('* * * * * sh')")
    assert raised.value.violations[0]["kind"] == "write"
    run = signer.session_log("s-1")[-1]["payload"]["sandbox"]
    assert [(v["kind"], v["target"]) for v in run["violations"]] == [("write", "/etc/cron.d")]
    assert not os.path.exists("/etc/cron.d/x")


def sandbox_required_guard(tree, tool_sandbox):
    identity = AgentIdentity.create("coder-bot", "alice@example.com", ["exec:code", "exec:shell"])
    data = bundle_data(tree)
    data["warden_registry"]["tools"]["run_python"]["sandbox"] = tool_sandbox
    backend = EmbeddedBackend.from_modules(library_modules(), data)
    return Guard(identity, backend, environment="prod", session_id="s-1", signer=ActionSigner(identity))


def test_a_tool_the_catalog_marks_sandboxed_is_refused_unsandboxed_and_runs_sandboxed(tree):
    guard = sandbox_required_guard(tree, {"required": True})
    ran = []

    @guard.tool
    def run_python(code: str) -> str:
        ran.append(code)
        return "ran with the agent's full rights"

    with pytest.raises(PolicyViolationError, match="sandbox-required: Tool run_python must run in the sandbox"):
        run_python("print(1)")
    with pytest.raises(PolicyViolationError, match="sandbox-required"):
        guard.enforce("run_python", {"code": "print(1)"})
    assert ran == []
    assert SandboxedAgent(guard).python("print(6 * 7)").stdout == b"42\n"


def test_a_catalog_sandbox_profile_replaces_the_agents_files_and_limits(tree):
    tool_dir = tree.base / "tool-only"
    tool_dir.mkdir()
    tool_dir.chmod(0o755)
    (tool_dir / "x.txt").write_text("tool file")
    (tool_dir / "x.txt").chmod(0o644)
    guard = sandbox_required_guard(tree, {"required": True, "profile": {"file_read": [str(tool_dir)]}})
    code = f"import os; print(open('{tool_dir}/x.txt').read(), os.path.exists('{tree.read}'))"
    assert SandboxedAgent(guard).python(code).stdout == b"tool file False\n"


def test_an_agent_without_a_sandbox_profile_gets_no_run_at_all(tree):
    guard, _, signer = governed(tree, name="plain-bot", scopes=("exec:code",))
    marker = tree.write / "ran"
    with pytest.raises(SandboxProfileError, match="no sandbox profile"):
        SandboxedAgent(guard).python(f"open('{marker}', 'w')")
    assert not marker.exists()
    assert signer.session_log("s-1")[-1]["payload"]["summary"].startswith("refused: sandbox: ")


def test_explicit_permissions_override_the_registry(tree):
    guard, _, _ = governed(tree, name="plain-bot", scopes=("exec:code",))
    agent = SandboxedAgent(guard, permissions=Permissions(shell_commands=["python3"]))
    assert agent.python("print(1 + 1)").stdout == b"2\n"
    assert agent.identity.name == "plain-bot"  # the base agent's attributes pass through


@pytest.mark.parametrize("argv", ["python3 -c 1", b"python3", [], ["python3", 1], ["python3\0"], ["\udc80"]])
def test_hostile_commands_are_refused_with_the_field_named(tree, argv):
    guard, _, _ = governed(tree)
    with pytest.raises((SandboxProfileError, TypeError)) as raised:
        SandboxedAgent(guard).run(argv, tool="run_python", args={"code": "x"})
    assert "argv" in str(raised.value)


def test_hostile_code_is_refused(tree):
    guard, _, _ = governed(tree)
    for code in (None, b"print(1)", 42):
        with pytest.raises(SandboxProfileError, match="code: must be a string"):
            SandboxedAgent(guard).python(code)
    with pytest.raises(TypeError, match="base_agent"):
        SandboxedAgent(object())
