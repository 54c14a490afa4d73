"""Run a command under bubblewrap with a profile's permissions: ``Sandbox(permissions).run(argv)``.

Each run gets fresh user, mount, PID, network, IPC, UTS and cgroup namespaces. The mount
namespace shows a read-only system (``/usr`` and the few ``/etc`` files a dynamic linker
needs), the profile's ``file_read`` paths read-only, its ``file_write`` paths read-write, a
private size-capped ``/tmp``, a minimal ``/dev`` and a ``/proc`` of its own PID namespace;
the root is read-only and there is no home directory. The network namespace has only its
own loopback; with ``network_access`` the egress proxy's Unix socket is the way out.

The command runs as an unprivileged user: when the agent runs as root, bubblewrap itself is
started as ``nobody`` (uid 65534), because a sandbox mapped to host root is exempt from the
process limit and owns every root file it can see. ``prlimit`` (util-linux) sets the
resource limits inside, after the namespaces exist, so the process limit counts only the
sandbox's processes. ``--die-with-parent`` ties the sandbox to the agent, and when the
command exits (or a limit stops it) the PID namespace's init exits and the kernel kills
every process left in it.
"""

from __future__ import annotations

import functools
import os
import re
import select
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import agents_sdk.sandbox.seccomp as seccomp
from agents_sdk.sandbox.egress import SOCKET_NAME, EgressProxy
from agents_sdk.sandbox.errors import SandboxProfileError, SandboxUnavailable, SandboxViolation
from agents_sdk.sandbox.permissions import Permissions
from agents_sdk.sandbox.scratch import ScratchRoot

# The uid the sandbox runs as on the host when the agent is root (Debian's "nobody").
UNPRIVILEGED_UID = 65534
UNPRIVILEGED_GID = 65534
# The uid and gid inside the sandbox.
SANDBOX_UID = 1000
SANDBOX_GID = 1000
EGRESS_DIRECTORY = "/run/warden"
EGRESS_SOCKET = f"{EGRESS_DIRECTORY}/{SOCKET_NAME}"
PATH = "/usr/local/bin:/usr/bin:/bin"
PRLIMIT = "/usr/bin/prlimit"
# With network access, agents_sdk/sandbox/bridge.py listens here on the sandbox's loopback
# (run by the system Python, when the host has one) and HTTPS_PROXY points at it.
BRIDGE_PORT = 3128
BRIDGE_PYTHON = "/usr/bin/python3"
BRIDGE_SOURCE = (Path(__file__).parent / "bridge.py").read_text("utf-8")

# What every sandbox reads: programs and libraries, and the /etc files the dynamic linker,
# TLS and time zones need. No passwd, shadow, hosts, resolv.conf or any credential.
SYSTEM_READ = (
    "/usr",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/ssl/certs",
    "/etc/localtime",
)
_MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of one run.

    ``exit_status`` is the command's exit code (128 + N when signal N ended it);
    ``limits_hit`` names the limits Warden saw stop the command (``wall_time``, ``output``,
    ``cpu_time``); ``violations`` lists what the sandbox refused and saw (egress requests).
    """

    argv: tuple[str, ...]
    exit_status: int
    stdout: bytes
    stderr: bytes
    profile_hash: str
    duration: float
    limits_hit: tuple[str, ...] = ()
    violations: tuple[dict[str, str], ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.limits_hit and not self.violations

    def record(self) -> dict[str, Any]:
        """The run as the ``sandbox`` field of a signed ``result`` record."""
        return {
            "command": list(self.argv),
            "profile_hash": self.profile_hash,
            "exit_status": self.exit_status,
            "limits_hit": list(self.limits_hit),
            "violations": [dict(v) for v in self.violations],
        }

    def summary(self) -> str:
        parts = [f"sandbox exit {self.exit_status}"]
        if self.limits_hit:
            parts.append("limits hit: " + ", ".join(self.limits_hit))
        if self.violations:
            parts.append(f"{len(self.violations)} violation(s)")
        return "; ".join(parts)


def _run_as_unprivileged() -> bool:
    return os.geteuid() == 0


@functools.cache
def _check_host() -> str:
    """The bwrap executable once the host proved it can build a sandbox; else SandboxUnavailable."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "bubblewrap is not installed (apt-get install bubblewrap); Warden refuses to run "
            "sandboxed tools without it and never runs them unsandboxed"
        )
    if not os.access(PRLIMIT, os.X_OK):
        raise SandboxUnavailable(f"{PRLIMIT} is missing (apt-get install util-linux); it sets the sandbox's limits")
    seccomp.filter_program()
    probe = [bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--die-with-parent",
             "--ro-bind", "/usr", "/usr", *_system_links(), "--", "/usr/bin/true"]
    extra = _privilege_drop()
    completed = subprocess.run(probe, capture_output=True, timeout=30, cwd="/", **extra)
    if completed.returncode != 0:
        detail = completed.stderr.decode("utf-8", "replace").strip()
        raise SandboxUnavailable(
            f"bubblewrap cannot create user namespaces here ({detail}); enable them "
            "(sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0, or the "
            "AppArmor profile for bwrap) — Warden refuses to run sandboxed tools until then"
        )
    return bwrap


def _has_bridge() -> bool:
    return os.access(BRIDGE_PYTHON, os.X_OK)


def _privilege_drop() -> dict[str, Any]:
    if _run_as_unprivileged():
        return {"user": UNPRIVILEGED_UID, "group": UNPRIVILEGED_GID, "extra_groups": []}
    return {}


def _system_links() -> list[str]:
    args: list[str] = []
    for name in _MERGED_USR:
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


class Sandbox:
    """Runs commands under one ``Permissions`` profile.

    ``Sandbox(permissions).run(["python3", "-c", code])`` returns a SandboxResult. It raises
    SandboxViolation (a PolicyViolationError) when the command is not in ``shell_commands``
    (nothing runs) or, with ``raise_on_violation`` (default), when the run made a refused request;
    SandboxUnavailable when the host cannot build a sandbox (the command never runs
    unsandboxed); SandboxProfileError when a listed path does not exist.
    """

    def __init__(self, permissions: Permissions, *, raise_on_violation: bool = True):
        if not isinstance(permissions, Permissions):
            raise SandboxProfileError("permissions: must be a Permissions")
        self.permissions = permissions
        self.raise_on_violation = raise_on_violation

    # -- building the sandbox -----------------------------------------------------------

    def _mounts(self) -> list[str]:
        args = ["--ro-bind-try" if path.startswith("/etc/") else "--ro-bind" for path in SYSTEM_READ]
        mounts: list[str] = []
        for flag, path in zip(args, SYSTEM_READ, strict=True):
            mounts += [flag, path, path]
        mounts += _system_links()
        listed = [(path, "--ro-bind") for path in self.permissions.file_read]
        listed += [(path, "--bind") for path in self.permissions.file_write]
        # Shallow paths first, so a path nested in another keeps its own mode.
        for path, flag in sorted(listed, key=lambda item: (item[0].count("/"), item[1] == "--bind")):
            source = os.path.realpath(path)
            if not os.path.exists(source):
                kind = "file_write" if flag == "--bind" else "file_read"
                raise SandboxProfileError(f"{kind}: {path!r} does not exist on this host; create it or remove it")
            mounts += [flag, source, path]
        return mounts

    def _command(self, argv: Sequence[str], *, seccomp_fd: int, proxy: EgressProxy | None,
                 cwd: str | None, env: Mapping[str, str], scratch: ScratchRoot) -> list[str]:
        limits = self.permissions.limits
        tmp_bytes = str(limits.file_size_mb * 1024 * 1024)
        args = [
            _check_host(),
            # The root is a scratch directory of the host, not a read-only tmpfs, so that a write
            # outside every bound path lands where Warden can see it after the run (a violation).
            "--bind", scratch.path, "/",
            "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup",
            "--disable-userns", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID),
            "--hostname", "sandbox", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--proc", "/proc", "--dev", "/dev",
            # tmpfs pages are not counted by RLIMIT_AS: cap them, or /tmp could fill the host's memory.
            "--size", tmp_bytes, "--tmpfs", "/tmp",
            "--size", tmp_bytes, "--tmpfs", "/dev/shm",
            # After /tmp, so that a profile path under /tmp is bound on top of the private one.
            *self._mounts(),
        ]
        if proxy is not None:
            args += ["--ro-bind", proxy.directory, EGRESS_DIRECTORY]
        scratch.expect(args)
        args += ["--clearenv"]
        for name, value in env.items():
            args += ["--setenv", name, value]
        args += ["--chdir", cwd or (self.permissions.file_write[0] if self.permissions.file_write else "/tmp")]
        args += ["--seccomp", str(seccomp_fd), "--"]
        if proxy is not None and _has_bridge():
            args += [BRIDGE_PYTHON, "-I", "-S", "-c", BRIDGE_SOURCE, str(BRIDGE_PORT), EGRESS_SOCKET, "--"]
        memory = limits.memory_mb * 1024 * 1024
        file_size = limits.file_size_mb * 1024 * 1024
        args += [
            PRLIMIT,
            f"--as={memory}:{memory}",
            # A hard limit one second above the soft one: SIGXCPU (not SIGKILL) names the cause.
            f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 1}",
            f"--nproc={limits.processes}:{limits.processes}",
            f"--fsize={file_size}:{file_size}",
            f"--nofile={limits.open_files}:{limits.open_files}",
            "--core=0:0",
            "--",
            *argv,
        ]
        return args

    def _environment(self, env: Mapping[str, str] | None, proxy: EgressProxy | None) -> dict[str, str]:
        result = {"PATH": PATH, "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        if proxy is not None:
            result["WARDEN_EGRESS_SOCKET"] = EGRESS_SOCKET
            if _has_bridge():
                for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
                    result[name] = f"http://127.0.0.1:{BRIDGE_PORT}"
        for name, value in (env or {}).items():
            if not isinstance(name, str) or not _ENV_NAME.match(name):
                raise SandboxProfileError(f"env: {name!r} is not a variable name (letters, digits, '_')")
            if not isinstance(value, str) or "\0" in value or any("\ud800" <= ch <= "\udfff" for ch in value):
                raise SandboxProfileError(f"env[{name}]: must be a string without NUL or lone surrogates")
            result[name] = value
        return result

    # -- running ------------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> SandboxResult:
        """Run ``argv`` in a fresh sandbox and wait for it; see the class docstring for what it raises."""
        if isinstance(argv, (str, bytes)) or not argv or not all(isinstance(a, str) for a in argv):
            raise SandboxProfileError("argv: must be a non-empty list of strings, e.g. ['python3', '-c', 'print(1)']")
        argv = tuple(argv)
        if any("\0" in a or any("\ud800" <= ch <= "\udfff" for ch in a) for a in argv):
            raise SandboxProfileError("argv: an argument contains NUL or a lone surrogate")
        if cwd is not None and (not isinstance(cwd, str) or not cwd.startswith("/") or "\0" in cwd):
            raise SandboxProfileError("cwd: must be an absolute path inside the sandbox, e.g. a file_write path")
        if not self.permissions.allows_command(argv):
            listed = ", ".join(self.permissions.shell_commands) or "none"
            raise SandboxViolation(
                f"sandbox-command-not-allowed: {argv[0]!r} is not among the agent's allowed commands ({listed})",
                tool=argv[0],
                violations=[{"kind": "command", "target": " ".join(argv)[:500], "reason": "not allowed"}],
            )
        started = time.monotonic()
        proxy: EgressProxy | None = None
        seccomp_fd = seccomp.program_fd()
        scratch = ScratchRoot(
            owner=(UNPRIVILEGED_UID, UNPRIVILEGED_GID) if _run_as_unprivileged() else None,
            max_bytes=self.permissions.limits.file_size_mb * 1024 * 1024,
        )
        try:
            if self.permissions.network_access:
                proxy = EgressProxy(self.permissions.network_access).start()
            command = self._command(argv, seccomp_fd=seccomp_fd, proxy=proxy, cwd=cwd,
                                    env=self._environment(env, proxy), scratch=scratch)
            exit_status, stdout, stderr, limits_hit = self._execute(command, stdin, scratch)
            written = scratch.writes()
        finally:
            os.close(seccomp_fd)
            scratch.remove()
            if proxy is not None:
                proxy.close()
        if exit_status == 1 and stderr.startswith(b"bwrap: "):
            # bubblewrap failed while building the sandbox: the command never started.
            detail = stderr.decode("utf-8", "replace").strip()
            raise SandboxUnavailable(
                f"bubblewrap could not build this sandbox ({detail}); when the agent runs as root, "
                f"file_read and file_write paths must be reachable by uid {UNPRIVILEGED_UID}"
            )
        if exit_status == 128 + signal.SIGXCPU:
            # The kernel signals SIGXCPU at the soft CPU limit; it ends a command that does not catch it.
            limits_hit = (*limits_hit, "cpu_time")
        violations = tuple(v.as_dict() for v in proxy.violations) if proxy is not None else ()
        violations += written
        result = SandboxResult(
            argv=argv,
            exit_status=exit_status,
            stdout=stdout,
            stderr=stderr,
            profile_hash=self.permissions.profile_hash,
            duration=time.monotonic() - started,
            limits_hit=limits_hit,
            violations=violations,
        )
        if violations and self.raise_on_violation:
            raise run_violation(result, tool=argv[0])
        return result

    def _execute(
        self, command: list[str], stdin: bytes | None, scratch: ScratchRoot
    ) -> tuple[int, bytes, bytes, tuple[str, ...]]:
        limits = self.permissions.limits
        seccomp_fd = int(command[command.index("--seccomp") + 1])
        # bubblewrap reports the sandbox's init there ({"child-pid": N}): the run is over only
        # when that process is gone, since it reaps the whole PID namespace as it exits.
        status_read, status_write = os.pipe()
        try:
            process = subprocess.Popen(
                [command[0], "--json-status-fd", str(status_write), *command[1:]],
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(seccomp_fd, status_write),
                cwd="/",  # the agent's directory may be closed to the unprivileged user
                start_new_session=True,
                **_privilege_drop(),
            )
        finally:
            os.close(status_write)
        if stdin is not None:
            threading.Thread(target=_feed, args=(process.stdin, stdin), daemon=True).start()
        budget = limits.output_kb * 1024
        buffers = {"stdout": bytearray(), "stderr": bytearray(), "status": bytearray()}
        limits_hit: list[str] = []
        init: int | None = None
        deadline = time.monotonic() + limits.wall_seconds
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ, "stdout")
            selector.register(process.stderr, selectors.EVENT_READ, "stderr")
            selector.register(status_read, selectors.EVENT_READ, "status")
            while selector.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    limits_hit.append("wall_time")
                    break
                if scratch.over_budget():
                    limits_hit.append("scratch_root")
                    break
                for key, _ in selector.select(timeout=min(remaining, scratch.POLL_SECONDS)):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        continue
                    if key.data == "status":
                        buffers["status"] += chunk
                        init = init or _init_pidfd(bytes(buffers["status"]))
                        continue
                    room = budget - len(buffers["stdout"]) - len(buffers["stderr"])
                    buffers[key.data] += chunk[: max(room, 0)]
                    if len(chunk) > room:
                        limits_hit.append("output")
                        break
                if limits_hit:
                    break
        os.close(status_read)
        if limits_hit:
            # Killing bubblewrap kills the sandbox's init (--die-with-parent), and with it the
            # whole PID namespace.
            _kill_group(process)
        try:
            exit_status = process.wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            _kill_group(process)
            exit_status = process.wait()
            if "wall_time" not in limits_hit:
                limits_hit.append("wall_time")
        if init is not None:
            _wait_for_namespace(init)
        for stream in (process.stdout, process.stderr, process.stdin):
            if stream is not None:
                stream.close()
        if exit_status < 0:
            exit_status = 128 - exit_status
        return exit_status, bytes(buffers["stdout"]), bytes(buffers["stderr"]), tuple(limits_hit)


def _init_pidfd(status: bytes) -> int | None:
    """A pidfd of the sandbox's init once bubblewrap has reported its pid, else None."""
    match = re.search(rb'"child-pid"\s*:\s*(\d+)', status)
    if match is None:
        return None
    try:
        return os.pidfd_open(int(match.group(1)))
    except ProcessLookupError:
        return None  # already gone, and its namespace with it


def _wait_for_namespace(pidfd: int) -> None:
    """Return once the sandbox's init has exited: the kernel kills and reaps every process
    of its PID namespace before that. Kill it if it lingers."""
    try:
        ready, _, _ = select.select([pidfd], [], [], 5)
        if not ready:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], 5)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)


_VIOLATION_RULES = {"write": "sandbox-write-outside-file-write"}


def run_violation(result: SandboxResult, *, tool: str) -> SandboxViolation:
    """The error a run with violations (refused connections, writes outside ``file_write``)
    raises, naming the first."""
    first = result.violations[0]
    rule = _VIOLATION_RULES.get(first.get("kind", ""), "sandbox-egress-refused")
    return SandboxViolation(
        f"{rule}: {first['target']}: {first['reason']}",
        tool=tool,
        violations=result.violations,
        result=result,
    )


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _feed(pipe: Any, data: bytes) -> None:
    try:
        pipe.write(data)
        pipe.close()
    except (BrokenPipeError, OSError, ValueError):
        pass
