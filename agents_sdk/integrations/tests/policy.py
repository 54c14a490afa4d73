"""The policy every integration test runs: the shipped rego/warden library, compiled by the
embedded engine, with a small registry as a bundle's data.json carries it.

- ``support-bot`` holds read:files and write:files: ``file_read`` is allowed, and
  ``file_delete`` under ``/prod/`` is held for approval by the library's no-prod-deletes rule;
- ``intern-bot`` holds only read:files: its ``file_delete`` is denied (missing-scope).
"""

from __future__ import annotations

from agents_sdk.guard import EmbeddedBackend, Guard
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from agents_sdk.tests.signed_bundles import library_modules
from agents_sdk.verify import verify_records

SCOPES = {"support-bot": ["read:files", "write:files"], "intern-bot": ["read:files"]}


def registry(protected_paths: list[str] | None = None, extra_tools: dict | None = None) -> dict:
    return {
        "warden_registry": {
            "agents": {
                name: {"status": "active", "owner": "alice@example.com", "scopes": scopes}
                for name, scopes in SCOPES.items()
            },
            "tools": {
                "file_read": {"scopes": ["read:files"], "category": "file"},
                "file_delete": {"scopes": ["write:files"], "category": "file"},
                **(extra_tools or {}),
            },
            "protected_paths": protected_paths or ["/prod/"],
            "destructive_file_tools": ["file_delete"],
            "approvals": {},
        }
    }


def backend(**registry_options) -> EmbeddedBackend:
    return EmbeddedBackend.from_modules(library_modules(), registry(**registry_options))


def governed(agent: str = "support-bot", *, policy: EmbeddedBackend | None = None, session_id: str = "s-1") -> Guard:
    """A Guard with a signer, for ``agent``, deciding with ``policy`` (the default registry)."""
    identity = AgentIdentity.create(agent, "alice@example.com", SCOPES[agent])
    return Guard(
        identity, policy or backend(), environment="prod", session_id=session_id, signer=ActionSigner(identity)
    )


def signed_log(guard: Guard) -> list[dict]:
    """The guard's signed records, after checking signatures and chain."""
    records = guard.signer.session_log()
    result = verify_records(records, {guard.identity.key_id: guard.identity.public_key})
    assert result.ok, result
    return records


def kinds(records: list[dict]) -> list[tuple]:
    """(kind, tool/effect) of each record, for comparing logs at a glance."""
    out = []
    for record in records:
        payload = record["payload"]
        if record["kind"] == "intent":
            out.append(("intent", payload["tool"], payload["args"]))
        elif record["kind"] == "decision":
            out.append(("decision", payload["effect"], [r["rule"] for r in payload["reasons"]]))
        else:
            out.append((record["kind"], payload.get("tool")))
    return out


def run_doc_example(name: str, monkeypatch, capsys) -> str:
    """Run docs/integrations.md's ``<!-- example: NAME -->`` block as a user would: in a fresh
    interpreter, from an empty directory, twice in a row; check each run printed the block's
    "It prints" output and nothing on stderr (no error at exit); return what it printed."""
    import os
    import re
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    text = (root / "docs" / "integrations.md").read_text("utf-8")
    match = re.search(
        rf"<!-- example: {re.escape(name)} -->\n```python\n(.*?)```\n\nIt prints:\n\n```console\n(.*?)```",
        text,
        re.DOTALL,
    )
    assert match, f"docs/integrations.md has no runnable example {name!r}"
    env = {**os.environ, "WARDEN_POLICY_DIR": str(root / "rego" / "warden")}
    with tempfile.TemporaryDirectory(prefix="warden-doc-") as clean:
        for _ in range(2):
            done = subprocess.run([sys.executable, "-c", match.group(1)], cwd=clean, env=env, capture_output=True,
                                  text=True, timeout=300, check=False)
            assert done.returncode == 0, done.stderr
            assert done.stdout == match.group(2)
            assert done.stderr == "", done.stderr
    return done.stdout


def file_functions(entered: list) -> list:
    """The two tools of the tests as plain functions, for each framework to wrap in its own
    tool type; each records that it was entered."""

    def file_delete(path: str) -> str:
        """Delete a file."""
        entered.append(("file_delete", path))
        return f"deleted {path}"

    def file_read(path: str) -> str:
        """Read a file."""
        entered.append(("file_read", path))
        return f"contents of {path}"

    return [file_delete, file_read]

# What the model reads when a held call cannot be filed (the control plane is unreachable).
UNREACHABLE = ("waiting for human approval (not filed yet: the control plane is unreachable; the request is spooled "
               "and sent again): no-prod-deletes: Production file deletion requires human approval")


def with_approvals(tmp_path, *, on_approval: str = "raise", grant: tuple[str, dict] | None = None) -> Guard:
    """support-bot with an ApprovalClient (agents_sdk.approvals) whose control plane is not
    reachable (port 9: nothing listens), so a held call is spooled and does not run. With
    ``grant=(tool, args)`` the registry carries the grant ``grant-1`` for exactly that call,
    as the bundle does once a person approved it (controlplane.approvals.grants.engine_entry)."""
    import time

    from agents_sdk.approvals import ApprovalClient, args_sha256

    data = registry()
    data["warden_registry"]["environment"] = "prod"
    if grant is not None:
        tool, args = grant
        data["warden_registry"]["approvals"] = {"grant-1": {
            "request_id": "r-1", "agent_id": "support-bot", "environment": "prod", "tool": tool, "args": args,
            "args_sha256": args_sha256(args), "expires_at_ns": int(time.time() + 300) * 1_000_000_000,
        }}
    identity = AgentIdentity.create("support-bot", "alice@example.com", SCOPES["support-bot"])
    client = ApprovalClient(identity, "http://127.0.0.1:9", spool_dir=tmp_path / "approval-spool",
                            ledger_dir=tmp_path / "used-grants", timeout=0.5)
    return Guard(identity, EmbeddedBackend.from_modules(library_modules(), data), environment="prod",
                 session_id="s-1", signer=ActionSigner(identity), approvals=client, on_approval=on_approval,
                 approval_timeout=1)
