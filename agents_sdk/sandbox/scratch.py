"""The sandbox's root as a scratch directory of the host, so writes outside ``file_write``
are seen and reported, not only refused.

bubblewrap 0.8 (Debian 12, Ubuntu 24.04) has no overlay mounts, so read-only paths
(``/usr``, ``file_read``) stay read-only binds: a write there fails with EROFS and cannot be
seen from outside. Everything else a tool could write to (``/``, ``/etc``, ``/var``,
``/home``, a new top-level directory) is this scratch directory: the write succeeds there,
never on the host's own files, and after the run every entry that is not one of
bubblewrap's mount points is reported as a ``write`` violation, then the directory is
removed. A run whose scratch root grows past ``max_bytes`` (the profile's file size limit)
or ``MAX_ENTRIES`` is stopped (limit ``scratch_root``).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

# bubblewrap options that create a mount point (or symlink) at their last argument.
_ONE_ARGUMENT = {"--proc", "--dev", "--tmpfs", "--dir", "--mqueue"}
_TWO_ARGUMENTS = {"--bind", "--ro-bind", "--ro-bind-try", "--bind-try", "--dev-bind", "--dev-bind-try", "--symlink"}
# Options whose arguments are not paths in the sandbox, skipped when reading mount points.
_SKIP = {"--size": 1, "--perms": 1, "--chmod": 2, "--setenv": 2, "--seccomp": 1, "--uid": 1, "--gid": 1,
         "--hostname": 1, "--chdir": 1, "--cap-drop": 1, "--json-status-fd": 1, "--unsetenv": 1}
MAX_ENTRIES = 10_000
MAX_REPORTED = 50


class ScratchRoot:
    """A host directory bound as the sandbox's ``/``; see the module docstring."""

    POLL_SECONDS = 0.25

    def __init__(self, *, owner: tuple[int, int] | None, max_bytes: int):
        self.path = tempfile.mkdtemp(prefix="warden-sandbox-root-")
        # The sandbox's user must be able to build mount points in it and write to it.
        os.chmod(self.path, 0o755)
        if owner is not None:
            os.chown(self.path, *owner)
        self.max_bytes = max_bytes
        self._expected: set[str] = {"/"}

    def expect(self, bwrap_args: list[str]) -> None:
        """Note the mount points (and their parents) bubblewrap creates from ``bwrap_args``."""
        index = 0
        while index < len(bwrap_args):
            option = bwrap_args[index]
            if option in _TWO_ARGUMENTS and index + 2 < len(bwrap_args):
                self._expect_path(bwrap_args[index + 2])
                index += 3
            elif option in _ONE_ARGUMENT and index + 1 < len(bwrap_args):
                self._expect_path(bwrap_args[index + 1])
                index += 2
            else:
                index += 1 + _SKIP.get(option, 0)

    def _expect_path(self, path: str) -> None:
        parts = [part for part in path.split("/") if part]
        for depth in range(1, len(parts) + 1):
            self._expected.add("/" + "/".join(parts[:depth]))

    def _entries(self) -> Iterator[tuple[str, os.stat_result]]:
        """(sandbox path, lstat) of everything in the scratch root, never following links."""
        stack = [("/", self.path)]
        while stack:
            inside, host = stack.pop()
            try:
                with os.scandir(host) as entries:
                    for entry in entries:
                        path = inside.rstrip("/") + "/" + entry.name
                        info = entry.stat(follow_symlinks=False)
                        yield path, info
                        if stat.S_ISDIR(info.st_mode):
                            stack.append((path, entry.path))
            except OSError:
                continue

    def over_budget(self) -> bool:
        """Whether the scratch root holds more than ``max_bytes`` or ``MAX_ENTRIES`` entries."""
        total = 0
        for count, (_, info) in enumerate(self._entries(), start=1):
            total += info.st_size if stat.S_ISREG(info.st_mode) else 0
            if total > self.max_bytes or count > MAX_ENTRIES:
                return True
        return False

    def writes(self) -> tuple[dict[str, str], ...]:
        """A ``write`` violation for each path written outside the bound ones (at most
        MAX_REPORTED, then one entry saying how many more)."""
        written = sorted((path for path, _ in self._entries() if path not in self._expected), key=lambda p: p.split("/"))
        # Report the outermost new path: "/var/x/y" is in "/var/x", made by the same write.
        outermost: list[str] = []
        for path in written:  # sorted: a path's parent, if new, came just before its subtree
            if not outermost or not path.startswith(outermost[-1] + "/"):
                outermost.append(path)
        violations = [
            {"kind": "write", "target": path[:500],
             "reason": "outside file_write: the write went to the sandbox's scratch root and was discarded"}
            for path in outermost[:MAX_REPORTED]
        ]
        if len(outermost) > MAX_REPORTED:
            violations.append({"kind": "write", "target": f"{len(outermost) - MAX_REPORTED} more paths",
                               "reason": "outside file_write: discarded"})
        return tuple(violations)

    def remove(self) -> None:
        def writable_then_retry(function: Callable[[str], Any], path: str, _exc: Any) -> None:
            # A tool may leave a directory without write permission; the scratch root is ours.
            try:
                os.chmod(os.path.dirname(path), 0o700)
                function(path)
            except OSError:
                pass

        shutil.rmtree(self.path, onerror=writable_then_retry)
