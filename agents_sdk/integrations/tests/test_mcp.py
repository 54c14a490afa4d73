"""`warden mcp-proxy` in front of the reference MCP filesystem server (npm
@modelcontextprotocol/server-filesystem, which nobody here wrote), driven by the official
MCP Python client over stdio and over streamable HTTP.

The upstream binary comes from WARDEN_MCP_FILESYSTEM_SERVER (the nox session installs it
with npm); proof of what reached the upstream is taken on the upstream's side: the files.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("mcp")

from mcp import Client, StdioServerParameters

from agents_sdk.identity import AgentIdentity
from agents_sdk.records import read_jsonl
from agents_sdk.verify import verify_records

from .policy import SCOPES, registry

REPO_ROOT = Path(__file__).resolve().parents[3]
FILESYSTEM_SERVER = os.environ.get("WARDEN_MCP_FILESYSTEM_SERVER")

pytestmark = pytest.mark.skipif(
    not FILESYSTEM_SERVER or not Path(FILESYSTEM_SERVER).exists(),
    reason="set WARDEN_MCP_FILESYSTEM_SERVER to node_modules/.bin/mcp-server-filesystem (nox -s integration-mcp does)",
)


@pytest.fixture
def files(tmp_path):
    root = tmp_path / "files"
    (root / "prod").mkdir(parents=True)
    (root / "srv").mkdir()
    (root / "prod" / "customers.db").write_text("the customers")
    (root / "srv" / "notes.txt").write_text("meeting at 10")
    return root.resolve()


@pytest.fixture
def proxy_config(tmp_path, files):
    identity = AgentIdentity.create("support-bot", "alice@example.com", SCOPES["support-bot"])
    identity.save(tmp_path / "agent.key")
    data = registry(
        protected_paths=[f"{files}/prod/"],
        extra_tools={
            "read_text_file": {"scopes": ["read:files"], "category": "file"},
            "write_file": {"scopes": ["write:files"], "category": "file"},
            "list_allowed_directories": {"scopes": ["read:files"]},
        },
    )
    data["warden_registry"]["destructive_file_tools"] = ["file_delete", "write_file"]
    (tmp_path / "data.json").write_text(json.dumps(data))
    config = {
        "identity": "agent.key",
        "environment": "prod",
        "session_id": "mcp-test",
        "log": "signed.jsonl",
        "hide_denied_tools": True,
        "upstream": {"name": "files", "command": FILESYSTEM_SERVER, "args": [str(files)]},
        "decision": {"policy_dir": str(REPO_ROOT / "rego" / "warden"), "data": "data.json"},
    }
    (tmp_path / "proxy.json").write_text(json.dumps(config))
    return tmp_path / "proxy.json", identity


def proxy_command(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "agents_sdk", "mcp-proxy", "--config", str(config), *extra]


def proxy_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


async def exercise(client: Client, files: Path) -> dict:
    listed = await client.list_tools()
    names = {tool.name for tool in listed.tools}
    # move_file is not registered: the policy denies it whatever the arguments.
    moved = await client.call_tool(
        "move_file", {"source": str(files / "prod/customers.db"), "destination": str(files / "x.db")}
    )
    held = await client.call_tool("write_file", {"path": str(files / "prod/customers.db"), "content": "gone"})
    read = await client.call_tool("read_text_file", {"path": str(files / "srv/notes.txt")})
    written = await client.call_tool("write_file", {"path": str(files / "srv/new.txt"), "content": "hello"})
    return {"names": names, "moved": moved, "held": held, "read": read, "written": written}


def check(outcome: dict, files: Path, config: Path, identity: AgentIdentity) -> None:
    assert "read_text_file" in outcome["names"] and "write_file" in outcome["names"]
    assert "move_file" not in outcome["names"]  # hidden: never allowed

    moved, held = outcome["moved"], outcome["held"]
    assert moved.is_error and moved.content[0].text == "unknown-tool: Tool move_file is not registered"
    assert held.is_error and held.content[0].text == (
        "waiting for human approval: no-prod-deletes: Production file deletion requires human approval"
    )
    # On the upstream's side: neither the move nor the overwrite happened.
    assert (files / "prod/customers.db").read_text() == "the customers"
    assert not (files / "x.db").exists()

    assert not outcome["read"].is_error and "meeting at 10" in outcome["read"].content[0].text
    assert not outcome["written"].is_error and (files / "srv/new.txt").read_text() == "hello"

    records = list(read_jsonl(config.parent / "signed.jsonl"))
    assert verify_records(records, {identity.key_id: identity.public_key}).ok
    summary = [(r["kind"], r["payload"].get("tool"), r["payload"].get("effect")) for r in records]
    assert summary == [
        ("intent", "move_file", None),
        ("decision", None, "deny"),
        ("result", "move_file", None),
        ("intent", "write_file", None),
        ("decision", None, "require_approval"),
        ("result", "write_file", None),
        ("intent", "read_text_file", None),
        ("decision", None, "allow"),
        ("result", "read_text_file", None),
        ("intent", "write_file", None),
        ("decision", None, "allow"),
        ("result", "write_file", None),
    ]
    assert records[2]["payload"]["summary"].startswith("not run (deny): unknown-tool")
    assert records[8]["payload"]["summary"].startswith("returned 1 content block(s), isError=false, sha256:")


def test_stdio_proxy_governs_the_filesystem_server(proxy_config, files):
    config, identity = proxy_config

    async def session():
        params = StdioServerParameters(
            command=proxy_command(config)[0], args=proxy_command(config)[1:], env=proxy_env()
        )
        async with Client(params) as client:
            return await exercise(client, files)

    check(asyncio.run(session()), files, config, identity)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_streamable_http_proxy_governs_the_filesystem_server(proxy_config, files):
    config, identity = proxy_config
    port = free_port()
    process = subprocess.Popen(
        proxy_command(config, "--transport", "http", "--addr", f"127.0.0.1:{port}"),
        env=proxy_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()
                assert time.monotonic() < deadline, "the proxy did not start listening"
                time.sleep(0.1)

        async def session():
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                return await exercise(client, files)

        check(asyncio.run(session()), files, config, identity)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_bad_config_names_the_field(tmp_path):
    (tmp_path / "proxy.json").write_text(json.dumps({"identity": "a.key", "upstream": {"name": "x"}, "decision": {}}))
    done = subprocess.run(
        proxy_command(tmp_path / "proxy.json"), env=proxy_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert "upstream: give exactly one of command (stdio) or url (streamable HTTP)" in done.stderr


# -- fuzzing the proxy over its stdio wire ---------------------------------------------------

MCP_FUZZ_EXAMPLES = int(os.environ.get("WARDEN_FUZZ_EXAMPLES", "400"))
# The mcp SDK parses messages with pydantic (jiter), which refuses nesting this deep; the
# message is then dropped before the proxy's code sees it. (Measured: 150 levels of
# arguments are answered, 200 are dropped.)
MCP_PARSER_DEPTH = 190


def nested_lists(depth: int) -> object:
    value: object = []
    for _ in range(depth):
        value = [value]
    return value if depth < 900 else "x" * depth


def depth_of(value: object) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest + 3  # params sit inside {"jsonrpc", "params": {"arguments": …}}


class RawStdioClient:
    """JSON-RPC lines written straight to `warden mcp-proxy`'s stdin: what a hostile or
    buggy client can send, \\ud800 escapes, NaN and all, which the official client would not.
    The proxy's stderr goes to a file (a pipe nobody reads would fill up and stall it)."""

    def __init__(self, command: list[str], stderr_path: Path):
        import queue
        import threading

        self.stderr_file = stderr_path.open("wb")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr_file,
                                        env=proxy_env(), bufsize=0)
        self.stderr_path = stderr_path
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.next_id = 0

    def _read(self) -> None:
        for line in iter(self.process.stdout.readline, b""):
            self.lines.put(line)
        self.lines.put(b"")

    def send(self, message: dict | bytes) -> None:
        raw = message if isinstance(message, bytes) else json.dumps(message, allow_nan=True).encode()
        self.process.stdin.write(raw + b"\n")
        self.process.stdin.flush()

    def request(self, method: str, params: dict, timeout: float = 30) -> dict:
        import queue

        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no answer to {method} {json.dumps(params)[:300]} within {timeout} s; "
                                     f"proxy stderr: {self.stderr_path.read_text(errors='replace')[-2000:]}") from None
            assert line, f"the proxy closed its output; stderr: {self.stderr_path.read_text(errors='replace')[-2000:]}"
            answer = json.loads(line)
            if answer.get("id") == self.next_id:
                return answer

    def close(self) -> int:
        self.process.stdin.close()
        try:
            return self.process.wait(timeout=30)
        finally:
            self.stderr_file.close()


def test_the_proxy_survives_arbitrary_tool_arguments_on_the_wire(proxy_config, files):
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    config, identity = proxy_config
    client = RawStdioClient(proxy_command(config), config.parent / "proxy.stderr")
    answers: dict[str, int] = {}
    try:
        init = client.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                             "clientInfo": {"name": "fuzz", "version": "1"}})
        assert "result" in init, init
        client.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

        text = st.one_of(st.text(alphabet=st.characters(exclude_categories=()), max_size=30),
                         st.sampled_from(["\ud800", "a\udfffb", "\x00", "rm -rf /\x00", str(files / "srv/notes.txt")]))
        scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.just(10**400), st.floats(), text)
        values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(text, c, max_size=4)),
                              max_leaves=20)
        deep = st.integers(1, 3000).map(nested_lists)
        arguments = st.one_of(st.dictionaries(text, st.one_of(values, deep), max_size=5),
                              st.fixed_dictionaries({"path": values}), values)
        tools = st.one_of(st.sampled_from(["read_text_file", "write_file", "list_allowed_directories"]), text)

        @hypothesis.settings(max_examples=MCP_FUZZ_EXAMPLES, deadline=None, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(tool=tools, args=arguments)
        def call(tool, args):
            params = {"name": tool, "arguments": args}
            try:
                json.dumps(params, ensure_ascii=False, allow_nan=True).encode("utf-8")
                parseable = depth_of(params) < MCP_PARSER_DEPTH
            except (UnicodeEncodeError, RecursionError):
                parseable = False
            if not parseable:
                # A lone surrogate, or nesting past its parser's limit: the official MCP SDK
                # drops the whole message (no JSON-RPC answer, nothing reaches Warden).
                # The proxy must still be serving.
                client.next_id += 1
                client.send({"jsonrpc": "2.0", "id": client.next_id, "method": "tools/call", "params": params})
                assert "result" in client.request("tools/list", {})
                answers["dropped by the MCP parser"] = answers.get("dropped by the MCP parser", 0) + 1
                return
            answer = client.request("tools/call", params)
            # A tool result (isError for refusals) or a JSON-RPC error for a malformed request.
            assert "result" in answer or "error" in answer, answer
            kind = "error" if "error" in answer else ("refused" if answer["result"].get("isError") else "ran")
            answers[kind] = answers.get(kind, 0) + 1

        call()
        client.send(b'{"jsonrpc": "2.0", "id": "x", "method": "tools/call", "params": {"name": "\\ud800"')  # cut off
        client.send(b"\xff\xfe not json")
        alive = client.request("tools/list", {})
        assert "result" in alive  # still serving after all of it
    finally:
        status = client.close()
    runs = sum(answers.values())
    print(f"\nfuzz mcp-proxy: {runs} tools/call requests, answers {dict(sorted(answers.items()))}, exit {status}")
    assert runs >= MCP_FUZZ_EXAMPLES * 0.9 and status == 0
    records = list(read_jsonl(config.parent / "signed.jsonl"))
    assert records and verify_records(records, {identity.key_id: identity.public_key}).ok


def test_the_config_on_the_docs_page_loads_with_shipping(tmp_path):
    import re

    from agents_sdk.integrations.mcp_proxy import load_config

    page = (REPO_ROOT / "docs" / "integrations.md").read_text("utf-8")
    block = re.search(r"<!-- example: config -->\n```yaml\n(.*?)```", page, re.DOTALL).group(1)
    (tmp_path / "mcp-proxy.yaml").write_text(block)
    config = load_config(tmp_path / "mcp-proxy.yaml")
    assert config.ship_url == "http://127.0.0.1:8000" and config.ship_spool_dir == tmp_path / "var/mcp-proxy-spool"
    assert config.session_id is None and config.upstream.name == "files"
    approvals = config.approvals
    assert approvals is not None and approvals.url == "http://127.0.0.1:8000"  # ship.url by default
    assert (approvals.on_approval, approvals.timeout) == ("wait", 300.0)
    assert approvals.spool_dir == tmp_path / "var/mcp-proxy-approvals"
    (tmp_path / "bad.yaml").write_text(block.replace("url: http://127.0.0.1:8000", "url: ftp://x"))
    with pytest.raises(Exception, match="ship.url"):
        load_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize(("change", "field"), [
    ("on_approval: wait", "on_approval: sometimes"), ("timeout: 300", "timeout: 0"), ("timeout: 300", "timeout: yes"),
    ("spool_dir: var/mcp-proxy-approvals", "spool_dir: ''"), ("# public_key: bundle-signing.pem", "public_key: k.pem"),
])
def test_a_bad_approvals_setting_is_refused_naming_it(tmp_path, change, field):
    import re

    from agents_sdk.integrations.mcp_proxy import ProxyConfigError, load_config

    page = (REPO_ROOT / "docs" / "integrations.md").read_text("utf-8")
    block = re.search(r"<!-- example: config -->\n```yaml\n(.*?)```", page, re.DOTALL).group(1)
    assert change in block
    (tmp_path / "bad.yaml").write_text(block.replace(change, field))
    with pytest.raises(ProxyConfigError, match=f"approvals.{field.split(':')[0]}"):
        load_config(tmp_path / "bad.yaml")


def test_with_approvals_a_held_call_is_spooled_while_the_control_plane_is_unreachable(proxy_config, files):
    from agents_sdk.integrations.mcp_proxy import guard_of, load_config

    config, identity = proxy_config
    settings = json.loads(config.read_text())
    # Port 9: nothing listens. The call must not run; the request waits in the spool.
    settings["approvals"] = {"url": "http://127.0.0.1:9", "spool_dir": "approvals", "on_approval": "wait",
                             "timeout": 5}
    config.write_text(json.dumps(settings))
    guard = guard_of(load_config(config), identity, None)  # what `warden mcp-proxy` decides with
    assert (guard.on_approval, guard.approval_timeout, guard.approvals.base_url) == ("wait", 5.0, "http://127.0.0.1:9")

    async def session():
        params = StdioServerParameters(command=proxy_command(config)[0], args=proxy_command(config)[1:],
                                       env=proxy_env())
        async with Client(params) as client:
            target = {"path": str(files / "prod/customers.db"), "content": "gone"}
            return [await client.call_tool("write_file", target) for _ in range(2)]

    for held in asyncio.run(session()):
        assert held.is_error and held.content[0].text.startswith(
            "waiting for human approval (not filed yet: the control plane is unreachable"
        )
    assert (files / "prod/customers.db").read_text() == "the customers"
    assert len(list((config.parent / "approvals").glob("*.request.json"))) == 1  # one held action, one request
