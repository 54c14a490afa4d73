"""A host layout for sandbox tests: an allowed read tree, an allowed write tree and a secret
next to them, in a directory the sandbox's unprivileged user can traverse (pytest's own
tmp_path is private to root)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agents_sdk.sandbox import Permissions, Sandbox
from agents_sdk.sandbox.runner import UNPRIVILEGED_GID, UNPRIVILEGED_UID

SECRET = "TOPSECRET-7f3a"


@dataclass
class HostTree:
    base: Path
    read: Path
    write: Path
    secret: Path

    def permissions(self, **overrides) -> Permissions:
        fields = {
            "file_read": [str(self.read)],
            "file_write": [str(self.write)],
            "shell_commands": ["python3", "sh"],
            "limits": {"wall_seconds": 20},
        }
        fields.update(overrides)
        return Permissions(**fields)

    def python(self, code: str, **overrides):
        """Run ``code`` in a sandbox with this tree's permissions; the printed JSON back."""
        result = Sandbox(self.permissions(**overrides)).run(["python3", "-c", code])
        assert result.exit_status == 0, result.stderr.decode()
        return json.loads(result.stdout)


def make_host_tree() -> HostTree:
    base = Path(tempfile.mkdtemp(prefix="warden-sandbox-", dir="/tmp"))
    base.chmod(0o755)
    read, write, secret_dir = base / "read", base / "write", base / "secret"
    for directory in (read, write, secret_dir):
        directory.mkdir()
        directory.chmod(0o755)
    (read / "data.txt").write_text("allowed data\n")
    (read / "data.txt").chmod(0o644)
    secret = secret_dir / "token"
    secret.write_text(SECRET)
    secret.chmod(0o644)  # readable by anyone on the host: only the sandbox's view hides it
    (read / "to-secret").symlink_to(secret)
    (write / "to-secret-dir").symlink_to(secret_dir)
    if os.geteuid() == 0:
        os.chown(write, UNPRIVILEGED_UID, UNPRIVILEGED_GID)
    return HostTree(base=base, read=read, write=write, secret=secret)


def remove_host_tree(tree: HostTree) -> None:
    shutil.rmtree(tree.base, ignore_errors=True)
