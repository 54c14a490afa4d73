"""The egress proxy: the only way out of a sandbox, and only to allowlisted hosts.

A sandbox has no network interface but its own loopback. When its profile lists hosts, an
``EgressProxy`` runs in the agent's process (outside the sandbox) on a Unix socket that is
bound into the sandbox at ``/run/warden/egress.sock``. Programs inside ask it
``CONNECT host:port HTTP/1.1``; it answers ``200`` and relays bytes, or ``403`` and records
a violation.

Host matching is the policy's (rego/warden/egress.rego: ``glob.match(pattern, ["."], host)``).
The proxy resolves the name itself and connects to the address it checked, so a DNS answer
that changes between check and connect (rebinding) cannot redirect it. Names that resolve to
loopback, private, link-local or other non-public addresses are refused unless the allowlist
names that address literally, and IP literals likewise, so "127.0.0.1", "2130706433",
"0x7f000001" or a name pointing at the host's PostgreSQL all go nowhere.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from agents_sdk.sandbox.permissions import split_host_entry

SOCKET_NAME = "egress.sock"
DEFAULT_PORTS = (80, 443)
MAX_REQUEST_HEAD = 8192
HANDSHAKE_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0
# Connections one sandbox may hold open at once: each costs the agent's process a thread.
MAX_CONNECTIONS = 64
_REQUEST_LINE = re.compile(r"^CONNECT (\S{1,300}) HTTP/1\.[01]$")


@dataclass(frozen=True)
class EgressViolation:
    """One refused connection: what was asked for and why it was refused."""

    target: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": "egress", "target": self.target, "reason": self.reason}


def _glob_regex(pattern: str) -> re.Pattern[str]:
    # OPA glob.match with delimiters ["."]: "*" stays within one label, "**" crosses labels.
    parts = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        elif pattern[index] == "*":
            parts.append(r"[^.]*")
            index += 1
        else:
            parts.append(re.escape(pattern[index]))
            index += 1
    return re.compile("^" + "".join(parts) + "$")


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


class HostAllowlist:
    """Decides whether ``host:port`` may be reached, as the policy decides a URL's host."""

    def __init__(self, entries: Iterable[str]):
        self._names: list[tuple[re.Pattern[str], tuple[int, ...]]] = []
        self._addresses: list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, tuple[int, ...]]] = []
        for entry in entries:
            host, port = split_host_entry(entry)
            ports = (port,) if port is not None else DEFAULT_PORTS
            address = _ip(host)
            if address is not None:
                self._addresses.append((address, ports))
            else:
                self._names.append((_glob_regex(host.lower()), ports))

    def refusal(self, host: str, port: int) -> str | None:
        """Why ``host:port`` is refused before any lookup, or None if its name is allowed."""
        address = _ip(host)
        if address is not None:
            if any(address == allowed and port in ports for allowed, ports in self._addresses):
                return None
            return f"{host} is an IP address the allowlist does not name"
        if not any(pattern.match(host) and port in ports for pattern, ports in self._names):
            return f"{host}:{port} is not on the agent's egress allowlist"
        return None

    def address_refusal(self, address: str, port: int) -> str | None:
        """Why a resolved address is refused: only public addresses, or ones listed literally."""
        ip = _ip(address)
        if ip is None:
            return f"{address} is not an IP address"
        if any(ip == allowed and port in ports for allowed, ports in self._addresses):
            return None
        if not ip.is_global:
            return f"resolves to {ip}, which is not a public address"
        return None


class EgressProxy:
    """A CONNECT proxy on a Unix socket, for one sandboxed run.

    ``start()`` creates the socket in a fresh directory (``directory``) and serves in a
    daemon thread; ``close()`` stops it and removes the directory. ``violations`` lists every
    refused request.
    """

    def __init__(self, allowlist: Iterable[str]):
        self.allowlist = HostAllowlist(allowlist)
        self.violations: list[EgressViolation] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._closed = threading.Event()
        self._connections: set[socket.socket] = set()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.directory = ""

    @property
    def socket_path(self) -> str:
        return os.path.join(self.directory, SOCKET_NAME)

    def start(self) -> EgressProxy:
        # Under /tmp rather than $TMPDIR, which may be private to the agent's user.
        self.directory = tempfile.mkdtemp(prefix="warden-egress-", dir="/tmp")
        # The sandbox may run as another uid (root drops to nobody): let it reach the socket.
        os.chmod(self.directory, 0o755)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o777)
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._serve, name="warden-egress", daemon=True).start()
        return self

    def close(self) -> None:
        self._closed.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        with self._lock:
            for connection in list(self._connections):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self.directory:
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass
            os.rmdir(self.directory)

    def __enter__(self) -> EgressProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- serving ------------------------------------------------------------------------

    def _serve(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                self._refuse(client, "", f"more than {MAX_CONNECTIONS} connections at once")
                client.close()
                continue
            threading.Thread(target=self._handle_in_slot, args=(client,), name="warden-egress-conn", daemon=True).start()

    def _handle_in_slot(self, client: socket.socket) -> None:
        try:
            self._handle(client)
        finally:
            self._slots.release()

    def _refuse(self, client: socket.socket, target: str, reason: str) -> None:
        with self._lock:
            self.violations.append(EgressViolation(target, reason))
        try:
            client.sendall(f"HTTP/1.1 403 Forbidden\r\nX-Warden-Refused: {reason}\r\nContent-Length: 0\r\n\r\n".encode())
        except OSError:
            pass

    def _handle(self, client: socket.socket) -> None:
        with client:
            client.settimeout(HANDSHAKE_TIMEOUT)
            head = b""
            try:
                while b"\r\n\r\n" not in head and len(head) <= MAX_REQUEST_HEAD:
                    chunk = client.recv(1024)
                    if not chunk:
                        return
                    head += chunk
            except OSError:
                return
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            match = _REQUEST_LINE.match(line)
            if len(head) > MAX_REQUEST_HEAD or match is None:
                self._refuse(client, line[:200], "only 'CONNECT host:port HTTP/1.1' requests are served")
                return
            target = match.group(1)
            try:
                host, port = split_host_entry(target)
            except ValueError:
                host, port = target, None
            if port is None or not 0 < port < 65536:
                self._refuse(client, target, "the request must name host:port")
                return
            host = host.lower().rstrip(".")
            reason = self.allowlist.refusal(host, port)
            if reason:
                self._refuse(client, target, reason)
                return
            upstream = self._connect(client, target, host, port)
            if upstream is None:
                return
            with upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                client.settimeout(None)
                self._relay(client, upstream)

    def _connect(self, client: socket.socket, target: str, host: str, port: int) -> socket.socket | None:
        try:
            answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            self._refuse(client, target, f"{host} does not resolve: {exc}")
            return None
        for family, kind, proto, _, address in answers:
            reason = self.allowlist.address_refusal(address[0], port)
            if reason:
                self._refuse(client, target, f"{host} {reason}")
                return None
        if not answers:
            self._refuse(client, target, f"{host} does not resolve")
            return None
        family, kind, proto, _, address = answers[0]
        upstream = socket.socket(family, kind, proto)
        upstream.settimeout(CONNECT_TIMEOUT)
        try:
            upstream.connect(address)
        except OSError as exc:
            upstream.close()
            try:
                client.sendall(f"HTTP/1.1 502 Bad Gateway\r\nX-Warden-Error: {exc}\r\n\r\n".encode())
            except OSError:
                pass
            return None
        upstream.settimeout(None)
        return upstream

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        with self._lock:
            self._connections.update((client, upstream))

        def pump(source: socket.socket, sink: socket.socket) -> None:
            try:
                while chunk := source.recv(65536):
                    sink.sendall(chunk)
            except OSError:
                pass
            finally:
                try:
                    sink.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join()
        with self._lock:
            self._connections.difference_update((client, upstream))
