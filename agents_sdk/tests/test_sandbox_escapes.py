"""Escape tests: real processes in a real bubblewrap sandbox try to get out, and fail.

Each test has a control: the same operation succeeds outside the sandbox (or on an allowed
path inside it), so the test fails if the sandbox stopped isolating.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import uuid

import pytest

from agents_sdk.errors import PolicyViolationError
from agents_sdk.sandbox import Sandbox, SandboxProfileError, SandboxUnavailable
from agents_sdk.tests.sandbox_fixtures import SECRET, make_host_tree, remove_host_tree

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="bubblewrap is Linux-only")

# Runs inside the sandbox: attempt(label, fn) records "ok: <value>" or the error's name.
PRELUDE = textwrap.dedent(
    """
    import errno, json, os, socket
    results = {}
    def attempt(label, fn):
        try:
            value = fn()
            results[label] = "ok: " + str(value)[:200]
        except socket.gaierror:
            results[label] = "gaierror"
        except OSError as exc:
            results[label] = errno.errorcode.get(exc.errno, str(exc.errno))
        except Exception as exc:
            results[label] = type(exc).__name__
    def read(path):
        with open(path) as f:
            return f.read()
    def write(path, text="x"):
        with open(path, "w") as f:
            return f.write(text)
    """
)


def inside(tree, body: str, **overrides) -> dict:
    return tree.python(PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(results))", **overrides)


@pytest.fixture
def tree():
    host = make_host_tree()
    yield host
    remove_host_tree(host)


# -- allowed work ------------------------------------------------------------------------


def test_allowed_reads_and_writes_succeed_and_the_write_reaches_the_host(tree):
    results = inside(
        tree,
        f"""
        attempt("read", lambda: read("{tree.read}/data.txt").strip())
        attempt("write", lambda: write("{tree.write}/out.txt", "made in the sandbox"))
        attempt("tmp", lambda: write("/tmp/scratch"))
        """,
    )
    assert results == {"read": "ok: allowed data", "write": "ok: 19", "tmp": "ok: 1"}
    assert (tree.write / "out.txt").read_text() == "made in the sandbox"


# -- reads outside file_read ---------------------------------------------------------------


def test_a_file_outside_file_read_cannot_be_read_by_any_path(tree):
    assert tree.secret.read_text() == SECRET  # control: the host itself can read it
    results = inside(
        tree,
        f"""
        attempt("direct", lambda: read("{tree.secret}"))
        attempt("symlink", lambda: read("{tree.read}/to-secret"))
        attempt("dotdot", lambda: read("{tree.read}/../secret/token"))
        attempt("proc_self_root", lambda: read("/proc/self/root{tree.secret}"))
        attempt("proc_1_root", lambda: read("/proc/1/root{tree.secret}"))
        attempt("proc_self_cwd", lambda: read("/proc/self/cwd/../secret/token"))
        attempt("dir_symlink", lambda: read("{tree.write}/to-secret-dir/token"))
        attempt("etc_shadow", lambda: read("/etc/shadow"))
        attempt("etc_passwd", lambda: read("/etc/passwd"))
        attempt("root_home", lambda: os.listdir("/root"))
        attempt("home", lambda: os.listdir("/home"))
        attempt("work", lambda: os.listdir("/work"))
        """,
    )
    assert all(value in ("ENOENT", "EACCES") for value in results.values()), results


def test_a_hard_link_to_a_file_outside_cannot_be_made(tree):
    results = inside(
        tree,
        f"""
        attempt("link_secret", lambda: os.link("{tree.secret}", "{tree.write}/stolen"))
        attempt("link_read_only", lambda: os.link("{tree.read}/data.txt", "{tree.write}/data-link"))
        attempt("link_shadow", lambda: os.link("/etc/shadow", "{tree.write}/shadow"))
        """,
    )
    assert results["link_secret"] == "ENOENT"
    assert results["link_shadow"] == "ENOENT"
    # Across two bind mounts a hard link is impossible even for a visible file.
    assert results["link_read_only"] == "EXDEV"
    assert not (tree.write / "stolen").exists()


def test_the_environment_of_the_agent_does_not_leak_into_the_sandbox(tree, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://secret@db/prod")
    results = inside(tree, 'attempt("env", lambda: sorted(os.environ))')
    assert "DATABASE_URL" not in results["env"]
    assert results["env"].startswith("ok: ")


# -- writes outside file_write ---------------------------------------------------------------


def test_writes_outside_file_write_fail_or_are_reported_and_the_host_is_unchanged(tree):
    code = PRELUDE + textwrap.dedent(
        f"""
        attempt("read_dir", lambda: write("{tree.read}/planted"))
        attempt("overwrite_read", lambda: write("{tree.read}/data.txt", "changed"))
        attempt("secret_dir", lambda: write("{tree.secret.parent}/planted"))
        attempt("through_symlink", lambda: write("{tree.write}/to-secret-dir/planted"))
        attempt("root", lambda: write("/planted"))
        attempt("usr", lambda: write("/usr/bin/planted"))
        attempt("etc", lambda: write("/etc/planted"))
        attempt("mkdir_var", lambda: os.makedirs("/var/planted"))
        attempt("mkdir_base", lambda: os.mkdir("{tree.base}/planted"))
        attempt("chmod_read", lambda: os.chmod("{tree.read}/data.txt", 0o777))
        attempt("rename_out", lambda: os.rename("{tree.write}/to-secret-dir", "{tree.read}/moved"))
        attempt("link_out", lambda: os.symlink("/etc/shadow", "/home"))
        print(json.dumps(results))
        """
    )
    with pytest.raises(PolicyViolationError, match="sandbox-write-outside-file-write: /etc/planted") as raised:
        Sandbox(tree.permissions()).run(["python3", "-c", code])
    result = raised.value.result
    results = json.loads(result.stdout)
    # Writes outside every bound path land in the sandbox's scratch root: they "succeed" in
    # there, are reported, and the scratch root is discarded.
    assert {label: results.pop(label) for label in ("root", "etc", "mkdir_var", "link_out")} == {
        "root": "ok: 1", "etc": "ok: 1", "mkdir_var": "ok: None", "link_out": "ok: None",
    }
    assert [(v["kind"], v["target"]) for v in result.violations] == [
        ("write", "/etc/planted"), ("write", "/home"), ("write", "/planted"), ("write", "/var"),
    ]
    # The tree's base lies under /tmp, which in the sandbox is its own tmpfs: the directory is
    # made there, and never on the host (checked below).
    assert results.pop("mkdir_base") == "ok: None"
    # Read-only binds refuse the write in the kernel (not reported: bubblewrap 0.8 has no overlay).
    assert all(value in ("EROFS", "ENOENT", "EACCES", "EPERM", "EXDEV") for value in results.values()), str(results)
    assert sorted(p.name for p in tree.read.iterdir()) == ["data.txt", "to-secret"]
    assert (tree.read / "data.txt").read_text() == "allowed data\n"
    assert sorted(p.name for p in tree.secret.parent.iterdir()) == ["token"]
    assert sorted(p.name for p in tree.base.iterdir()) == ["read", "secret", "write"]
    assert not os.path.exists("/planted") and not os.path.exists("/var/planted")
    assert not os.path.exists("/etc/planted")


def test_a_run_that_fills_its_scratch_root_is_stopped(tree):
    # Each file stays under the 1 MB file size limit; together they pass the scratch root's budget.
    code = "import time\nfor i in range(3):\n    open(f'/f{i}', 'wb').write(b'x' * 700_000)\ntime.sleep(20)"
    permissions = tree.permissions(limits={"wall_seconds": 20, "file_size_mb": 1})
    result = Sandbox(permissions, raise_on_violation=False).run(["python3", "-c", code])
    assert result.limits_hit == ("scratch_root",)
    assert result.duration < 5
    assert [v["target"] for v in result.violations] == ["/f0", "/f1", "/f2"]


# -- network ---------------------------------------------------------------------------------


def _host_address() -> str:
    """An address of this host other than loopback (the route to the outside)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent for a UDP connect
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def test_without_network_access_no_host_service_or_address_can_be_reached(tree):
    for port in (5432, 6379):  # control: PostgreSQL and Redis answer on the host
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    address = _host_address()
    results = inside(
        tree,
        f"""
        def connect(host, port):
            with socket.create_connection((host, port), timeout=2):
                return "connected"
        attempt("postgres", lambda: connect("127.0.0.1", 5432))
        attempt("redis", lambda: connect("127.0.0.1", 6379))
        attempt("localhost_name", lambda: connect("localhost", 5432))
        attempt("decimal_ip", lambda: connect("2130706433", 5432))
        attempt("host_address", lambda: connect("{address}", 5432))
        attempt("public_ip", lambda: connect("1.1.1.1", 443))
        attempt("dns", lambda: socket.getaddrinfo("example.com", 443))
        def udp_dns():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            return s.sendto(b"x", ("8.8.8.8", 53))
        attempt("udp_dns", udp_dns)
        attempt("raw_packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
        attempt("netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW))
        attempt("interfaces", lambda: sorted(name for _, name in socket.if_nameindex()))
        """,
    )
    interfaces = results.pop("interfaces")
    assert interfaces in ("ok: ['lo']", "EAFNOSUPPORT"), interfaces
    assert results["postgres"] == "ECONNREFUSED" and results["redis"] == "ECONNREFUSED"
    assert results["decimal_ip"] == "ECONNREFUSED"  # 2130706433 is 127.0.0.1: the sandbox's own, empty loopback
    assert results["localhost_name"] in ("ECONNREFUSED", "gaierror")  # no /etc/hosts in the sandbox
    # The host's own address is not in the sandbox's network namespace at all.
    assert results["host_address"] in ("ENETUNREACH", "ECONNREFUSED")
    assert results["public_ip"] == "ENETUNREACH"
    assert results["dns"] == "gaierror"
    assert results["udp_dns"] == "ENETUNREACH"
    assert results["raw_packet"] == "EAFNOSUPPORT" and results["netlink"] == "EAFNOSUPPORT"


# -- processes -----------------------------------------------------------------------------


def test_other_processes_are_invisible(tree):
    results = inside(
        tree,
        f"""
        attempt("pids", lambda: sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
        attempt("agent", lambda: read("/proc/{os.getpid()}/cmdline"))
        attempt("kill_agent", lambda: os.kill({os.getpid()}, 0))
        attempt("init", lambda: read("/proc/1/comm").strip())
        """,
    )
    pids = json.loads(results["pids"][4:])
    assert max(pids) < 10 and len(pids) <= 4, pids  # bwrap's init, prlimit→python, nothing else
    assert results["agent"] == "ENOENT"
    assert results["kill_agent"] == "ESRCH"
    assert results["init"] == "ok: bwrap"


def _processes_with(token: str, program: bytes = b"") -> list[int]:
    """Host processes whose command line holds ``token`` (and starts with ``program``)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read()
                if token.encode() in cmdline and cmdline.startswith(program):
                    found.append(int(pid))
        except OSError:
            continue
    return found


def test_no_child_survives_the_tool_even_a_daemonized_one(tree):
    token = f"warden-survivor-{uuid.uuid4().hex}"
    code = textwrap.dedent(
        f"""
        import os, subprocess
        subprocess.Popen(["sh", "-c", "sleep 300 # {token}"], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if os.fork() == 0:
            os.setsid()
            os.execvp("sh", ["sh", "-c", "trap '' HUP TERM; sleep 300 # {token}"])
        print("detached")
        """
    )
    result = Sandbox(tree.permissions()).run(["python3", "-c", code])
    assert result.stdout == b"detached\n"
    assert _processes_with(token) == []
    # control: the same daemon started on the host does survive its parent
    host = subprocess.Popen(["sh", "-c", f"sleep 300 # {token}"], start_new_session=True)
    try:
        assert _wait_for(lambda: host.pid in _processes_with(token))
    finally:
        host.kill()
        host.wait()


def test_a_fork_bomb_is_stopped_by_the_process_limit_and_leaves_nothing(tree):
    token = f"warden-bomb-{uuid.uuid4().hex}"
    bomb = f"bomb() {{ bomb | bomb & }}; bomb; sleep 2 # {token}"
    result = Sandbox(tree.permissions(limits={"processes": 32, "wall_seconds": 5})).run(["sh", "-c", bomb])
    assert b"Cannot fork" in result.stderr or b"fork" in result.stderr.lower() or result.limits_hit == ("wall_time",)
    assert _processes_with(token) == []
    counted = inside(
        tree,
        """
        children = []
        def spawn():
            while True:
                pid = os.fork()
                if pid == 0:
                    import time; time.sleep(5); os._exit(0)
                children.append(pid)
        attempt("fork", spawn)
        results["spawned"] = len(children)
        """,
        limits={"processes": 16},
    )
    assert counted["fork"] == "EAGAIN"
    assert 0 < counted["spawned"] < 16


def test_a_memory_bomb_is_stopped_by_the_memory_limit(tree):
    results = inside(
        tree,
        """
        attempt("allocate", lambda: len(bytearray(1024 * 1024 * 1024)))
        attempt("small", lambda: len(bytearray(1024 * 1024)))
        """,
        limits={"memory_mb": 128},
    )
    assert results == {"allocate": "MemoryError", "small": "ok: 1048576"}


def test_tmp_and_files_are_capped(tree):
    results = inside(
        tree,
        f"""
        chunk = b"x" * (1024 * 1024)
        def fill(path, count):
            with open(path, "wb") as f:
                for _ in range(count):
                    f.write(chunk)
                    f.flush()
            return count
        attempt("tmp", lambda: fill("/tmp/fill", 64))
        attempt("shm", lambda: fill("/dev/shm/fill", 64))
        attempt("write_dir", lambda: fill("{tree.write}/big", 64))
        """,
        limits={"file_size_mb": 8},
    )
    assert results["tmp"] in ("ENOSPC", "EFBIG")
    assert results["shm"] in ("ENOSPC", "EFBIG")
    assert results["write_dir"] == "EFBIG"


def test_wall_time_cpu_time_and_output_limits_stop_the_command(tree):
    slow = Sandbox(tree.permissions(limits={"wall_seconds": 1})).run(["sh", "-c", "sleep 30"])
    assert slow.limits_hit == ("wall_time",) and slow.exit_status == 137
    spin = Sandbox(tree.permissions(limits={"cpu_seconds": 1})).run(["python3", "-c", "while True: pass"])
    assert spin.limits_hit == ("cpu_time",)
    loud = Sandbox(tree.permissions(limits={"output_kb": 4})).run(["python3", "-c", "print('x' * 10**6)"])
    assert loud.limits_hit == ("output",) and len(loud.stdout) + len(loud.stderr) == 4096
    calm = Sandbox(tree.permissions()).run(["python3", "-c", "print('x' * 100)"])
    assert calm.limits_hit == () and calm.ok


# -- kernel surface --------------------------------------------------------------------------

SYSCALL_PROBES = textwrap.dedent(
    """
    import ctypes, errno, json, os
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    def call(number, *args):
        ctypes.set_errno(0)
        value = libc.syscall(number, *[ctypes.c_long(a) for a in args])
        return "ok" if value >= 0 else errno.errorcode[ctypes.get_errno()]
    results = {
        "ptrace_traceme": call(101, 0, 0, 0, 0),          # PTRACE_TRACEME
        "keyctl_session": call(250, 0, -3, 0),            # KEYCTL_GET_KEYRING_ID of the session keyring
        "personality_query": call(135, 0xFFFFFFFF),       # read the execution domain
        "unshare_user": call(272, 0x10000000),            # CLONE_NEWUSER
        "io_uring_setup": call(425, 1, ctypes.addressof(ctypes.create_string_buffer(120))),
    }
    print(json.dumps(results))
    """
)


def test_the_seccomp_filter_refuses_syscalls_that_work_outside_the_sandbox(tree):
    outside = subprocess.run(["python3", "-c", SYSCALL_PROBES], capture_output=True, text=True, check=True)
    control = json.loads(outside.stdout)
    assert control["ptrace_traceme"] == "ok" and control["keyctl_session"] == "ok"
    assert control["personality_query"] == "ok"
    result = Sandbox(tree.permissions()).run(["python3", "-c", SYSCALL_PROBES])
    refused = json.loads(result.stdout)
    assert refused == {name: "EPERM" for name in refused}, refused


def test_a_command_not_in_shell_commands_never_starts(tree):
    marker = tree.write / "ran"
    sandbox = Sandbox(tree.permissions(shell_commands=["python3"]))
    with pytest.raises(PolicyViolationError, match="sandbox-command-not-allowed: 'sh'") as raised:
        sandbox.run(["sh", "-c", f"touch {marker}"])
    assert raised.value.violations[0]["kind"] == "command"
    assert not marker.exists()
    # an exact command-line entry allows that line only
    exact = Sandbox(tree.permissions(shell_commands=["python3 -c print(42)"]))
    assert exact.run(["python3", "-c", "print(42)"]).stdout == b"42\n"
    with pytest.raises(PolicyViolationError):
        exact.run(["python3", "-c", "print(43)"])


def test_without_bubblewrap_the_sandbox_refuses_instead_of_running_unsandboxed(tmp_path):
    marker = tmp_path / "ran"
    code = textwrap.dedent(
        f"""
        from agents_sdk.sandbox import Permissions, Sandbox, SandboxUnavailable
        try:
            Sandbox(Permissions(shell_commands=["touch"])).run(["touch", "{marker}"])
        except SandboxUnavailable as exc:
            print(exc)
        """
    )
    env = {**os.environ, "PATH": str(tmp_path)}  # no bwrap on this PATH
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "bubblewrap is not installed (apt-get install bubblewrap)" in completed.stdout
    assert not marker.exists()


def test_exit_status_and_stdin_pass_through(tree):
    result = Sandbox(tree.permissions()).run(
        ["python3", "-c", "import sys; data = sys.stdin.read(); print(data.upper()); sys.exit(3)"], stdin=b"hello"
    )
    assert result.exit_status == 3 and result.stdout == b"HELLO\n"


def test_the_sandbox_dies_with_the_agent_that_started_it(tree):
    token = f"warden-orphan-{uuid.uuid4().hex}"
    agent_code = textwrap.dedent(
        f"""
        from agents_sdk.sandbox import Permissions, Sandbox
        Sandbox(Permissions(shell_commands=["sh"], limits={{"wall_seconds": 300}})).run(
            ["sh", "-c", "sleep 300 # {token}"])
        """
    )
    agent = subprocess.Popen([sys.executable, "-c", agent_code], env={**os.environ, "PYTHONPATH": os.getcwd()})
    sandboxed = lambda: [pid for pid in _processes_with(token) if pid != agent.pid]  # noqa: E731
    try:
        # Wait for the command itself, i.e. for bubblewrap to have finished its set-up.
        assert _wait_for(lambda: _processes_with(token, program=b"sh")), "the sandboxed command never started"
        agent.kill()  # SIGKILL: the agent gets no chance to clean up
        agent.wait()
        assert _wait_for(lambda: not sandboxed()), sandboxed()
    finally:
        agent.kill()


def _wait_for(condition, attempts: int = 100) -> bool:
    """Poll a condition (up to ~10 s): process start and teardown are asynchronous."""
    import time

    for _ in range(attempts):
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_a_missing_profile_path_is_named_and_nothing_runs(tree):
    missing = tree.base / "not-there"
    with pytest.raises(SandboxProfileError, match=f"file_write: '{missing}' does not exist on this host"):
        Sandbox(tree.permissions(file_write=[str(missing)])).run(["python3", "-c", "print(1)"])


@pytest.mark.skipif(os.geteuid() != 0, reason="only root drops to uid 65534")
def test_a_path_the_unprivileged_sandbox_user_cannot_reach_is_refused_clearly(tree):
    closed = tree.base / "closed"
    (closed / "inner").mkdir(parents=True)
    closed.chmod(0o700)  # root's own: reachable by the agent, not by the sandbox's uid
    with pytest.raises(SandboxUnavailable, match="must be reachable by uid 65534"):
        Sandbox(tree.permissions(file_read=[str(closed / "inner")])).run(["python3", "-c", "print(1)"])


def test_env_and_cwd_reach_the_command_and_hostile_ones_are_refused(tree):
    sandbox = Sandbox(tree.permissions())
    result = sandbox.run(["python3", "-c", "import os; print(os.getcwd(), os.environ['GREETING'])"],
                         env={"GREETING": "grüß dich"}, cwd=str(tree.read))
    assert result.stdout.decode() == f"{tree.read} grüß dich\n"
    for kwargs, message in (
        ({"env": {"BAD NAME": "x"}}, "env: 'BAD NAME' is not a variable name"),
        ({"env": {"X": "a\0b"}}, r"env\[X\]: must be a string without NUL"),
        ({"env": {"X": "\udc80"}}, "lone surrogates"),
        ({"env": {"X": 1}}, r"env\[X\]"),
        ({"cwd": "relative"}, "cwd: must be an absolute path"),
        ({"cwd": "/tmp/\0"}, "cwd: must be an absolute path"),
    ):
        with pytest.raises(SandboxProfileError, match=message):
            sandbox.run(["python3", "-c", "print(1)"], **kwargs)
