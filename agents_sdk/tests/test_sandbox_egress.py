"""The egress proxy: sandboxed code reaches an allowlisted host through the Unix socket, and
nothing else, whatever name, number or DNS answer it tries."""

from __future__ import annotations

import json
import socket
import textwrap
import threading

import pytest

from agents_sdk.engine import RegoEngine
from agents_sdk.errors import PolicyViolationError
from agents_sdk.sandbox import Permissions, Sandbox
from agents_sdk.sandbox.egress import HostAllowlist

# Inside the sandbox: ask the proxy for each target, print the status line (and the echo).
CLIENT = textwrap.dedent(
    """
    import json, os, socket, sys
    answers = {}
    for target in json.loads(sys.argv[1]):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(os.environ["WARDEN_EGRESS_SOCKET"])
            s.sendall(f"CONNECT {target} HTTP/1.1\\r\\nHost: {target}\\r\\n\\r\\n".encode())
            head = b""
            while b"\\r\\n\\r\\n" not in head:
                chunk = s.recv(1024)
                if not chunk:
                    break
                head += chunk
            status = head.split(b"\\r\\n")[0].decode()
            if " 200 " in status:
                s.sendall(b"ping")
                status += " | " + s.recv(100).decode()
            answers[target] = status
    print(json.dumps(answers))
    """
)


@pytest.fixture
def echo_server():
    """A TCP server on the host's loopback that answers each connection with "echo:<data>"."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                return
            with client:
                client.sendall(b"echo:" + client.recv(100))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()


def ask(allowlist: list[str], targets: list[str]):
    sandbox = Sandbox(
        Permissions(network_access=allowlist, shell_commands=["python3"], limits={"wall_seconds": 20}),
        raise_on_violation=False,
    )
    result = sandbox.run(["python3", "-c", CLIENT, json.dumps(targets)])
    assert result.exit_status == 0, result.stderr.decode()
    return json.loads(result.stdout), result


def test_an_allowlisted_host_is_reached_through_the_proxy(echo_server):
    answers, result = ask([f"127.0.0.1:{echo_server}"], [f"127.0.0.1:{echo_server}"])
    assert answers == {f"127.0.0.1:{echo_server}": "HTTP/1.1 200 Connection established | echo:ping"}
    assert result.violations == () and result.ok


def test_unlisted_hosts_ports_numeric_forms_and_host_services_are_refused(echo_server):
    targets = [
        "127.0.0.1:5432",  # the host's PostgreSQL
        "127.0.0.1:6379",  # the host's Redis
        f"localhost:{echo_server}",  # a name for an allowed address, not itself listed
        f"2130706433:{echo_server}",  # 127.0.0.1 as a decimal number
        f"0x7f000001:{echo_server}",  # ... as hex
        f"127.1:{echo_server}",  # ... abbreviated
        f"[::1]:{echo_server}",
        f"127.0.0.2:{echo_server}",
        "example.com:443",
        "pypi.org.evil.test:443",
    ]
    answers, result = ask([f"127.0.0.1:{echo_server}"], targets)
    assert answers == {target: "HTTP/1.1 403 Forbidden" for target in targets}
    assert [v["target"] for v in result.violations] == targets
    assert all(v["kind"] == "egress" for v in result.violations)


def test_a_listed_name_that_resolves_to_a_private_address_is_refused(echo_server):
    # DNS pointing an allowed name at the host (here "localhost" → 127.0.0.1) goes nowhere.
    answers, result = ask([f"localhost:{echo_server}"], [f"localhost:{echo_server}"])
    assert answers == {f"localhost:{echo_server}": "HTTP/1.1 403 Forbidden"}
    assert "not a public address" in result.violations[0]["reason"]


def test_a_refused_connection_raises_policy_violation_with_what_was_refused(echo_server):
    sandbox = Sandbox(Permissions(network_access=[f"127.0.0.1:{echo_server}"], shell_commands=["python3"]))
    with pytest.raises(PolicyViolationError, match="sandbox-egress-refused: 127.0.0.1:5432") as raised:
        sandbox.run(["python3", "-c", CLIENT, json.dumps(["127.0.0.1:5432"])])
    assert raised.value.result.violations == raised.value.violations
    assert raised.value.violations[0]["target"] == "127.0.0.1:5432"


def test_requests_other_than_connect_are_refused(echo_server):
    code = textwrap.dedent(
        """
        import os, socket
        for request in (b"GET http://127.0.0.1/ HTTP/1.1\\r\\n\\r\\n", b"CONNECT a b c\\r\\n\\r\\n", b"\\x00" * 9000):
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(os.environ["WARDEN_EGRESS_SOCKET"])
                s.sendall(request)
                print(s.recv(30).split(b"\\r\\n")[0].decode())
        """
    )
    sandbox = Sandbox(
        Permissions(network_access=[f"127.0.0.1:{echo_server}"], shell_commands=["python3"]), raise_on_violation=False
    )
    result = sandbox.run(["python3", "-c", code])
    assert result.stdout.decode().splitlines() == ["HTTP/1.1 403 Forbidden"] * 3
    assert len(result.violations) == 3


def test_without_network_access_there_is_no_proxy_socket():
    result = Sandbox(Permissions(shell_commands=["python3"])).run(
        ["python3", "-c", "import os; print(os.environ.get('WARDEN_EGRESS_SOCKET'), os.path.exists('/run/warden'))"]
    )
    assert result.stdout == b"None False\n"


EGRESS_RULE = """
package sandbox_test

import rego.v1

allowed contains host if {
    some host in input.hosts
    some pattern in input.patterns
    glob.match(lower(pattern), ["."], host)
}
"""


def test_host_matching_agrees_with_the_policys_glob_match():
    patterns = ["*.example.com", "api.stripe.com", "**.internal.test", "pypi.org"]
    hosts = [
        "a.example.com", "example.com", "a.b.example.com", "api.stripe.com", "xapi.stripe.com",
        "api.stripe.com.evil.test", "x.y.internal.test", "internal.test", "pypi.org", "files.pypi.org",
    ]
    policy = RegoEngine().compile({"sandbox_test.rego": EGRESS_RULE})
    by_policy = set(policy.evaluate("data.sandbox_test.allowed", {"hosts": hosts, "patterns": patterns}))
    allowlist = HostAllowlist(patterns)
    by_proxy = {host for host in hosts if allowlist.refusal(host, 443) is None}
    assert by_proxy == by_policy
    assert by_proxy == {"a.example.com", "api.stripe.com", "x.y.internal.test", "pypi.org"}


def test_ordinary_clients_reach_the_proxy_through_https_proxy_on_the_sandbox_loopback(echo_server):
    code = textwrap.dedent(
        f"""
        import os, socket, urllib.parse
        proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
        for target in ("127.0.0.1:{echo_server}", "127.0.0.1:5432"):
            with socket.create_connection((proxy.hostname, proxy.port), timeout=5) as s:
                s.sendall(f"CONNECT {{target}} HTTP/1.1\\r\\n\\r\\n".encode())
                status = s.recv(100).split(b"\\r\\n")[0].decode()
                if " 200 " in status:
                    s.sendall(b"via-tcp")
                    status += " | " + s.recv(100).decode()
                print(status)
        """
    )
    sandbox = Sandbox(
        Permissions(network_access=[f"127.0.0.1:{echo_server}"], shell_commands=["python3"]), raise_on_violation=False
    )
    result = sandbox.run(["python3", "-c", code])
    assert result.exit_status == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == [
        "HTTP/1.1 200 Connection established | echo:via-tcp",
        "HTTP/1.1 403 Forbidden",
    ]
    assert [v["target"] for v in result.violations] == ["127.0.0.1:5432"]


def test_the_bridge_passes_the_commands_exit_status_and_signals_through(echo_server):
    sandbox = Sandbox(Permissions(network_access=[f"127.0.0.1:{echo_server}"], shell_commands=["sh"]))
    assert sandbox.run(["sh", "-c", "exit 7"]).exit_status == 7
    assert sandbox.run(["sh", "-c", "kill -9 $$"]).exit_status == 137
