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
