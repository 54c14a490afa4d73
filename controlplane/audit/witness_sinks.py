"""The witness beyond the local file: each witness line is also sent to a remote syslog
(RFC 5424 messages; TCP with octet-counting framing, RFC 6587, or UDP), which the database's
roles and the web host cannot rewrite once it is received (WARDEN_AUDIT_WITNESS_SYSLOG).

A collector that keeps what it receives append-only (a SIEM, rsyslog writing to WORM storage)
then holds every checkpoint head: cutting the log's tail in the database and rewriting the
local witness file still leaves the heads there.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from datetime import UTC, datetime
from typing import Any

from agents_sdk.records import canonical_json
from controlplane.settings.registry import setting

APP_NAME = "warden-audit"
MSG_ID = "witness"
# facility 13 (log audit), severity 5 (notice): <PRI> = 13 * 8 + 5
PRIORITY = 13 * 8 + 5
TIMEOUT = 3.0


class SinkError(OSError):
    pass


def target() -> tuple[str, str, int] | None:
    """(scheme, host, port) of the configured syslog collector, or None when off.

    Raises SinkError for a value that is not tcp://host:port or udp://host:port.
    """
    configured = str(setting("WARDEN_AUDIT_WITNESS_SYSLOG") or "").strip()
    if not configured:
        return None
    try:
        parsed = urllib.parse.urlsplit(configured)
        port = parsed.port
    except ValueError:  # an unclosed IPv6 bracket, a port out of range
        parsed, port = urllib.parse.urlsplit(""), None
    if parsed.scheme not in ("tcp", "udp") or not parsed.hostname or port is None or parsed.path not in ("", "/"):
        raise SinkError(f"WARDEN_AUDIT_WITNESS_SYSLOG {configured!r} is not tcp://host:port or udp://host:port")
    return parsed.scheme, parsed.hostname, port


def message(entry: dict[str, Any], *, now: datetime | None = None) -> bytes:
    """One RFC 5424 message whose MSG is the witness line (canonical JSON, ASCII only)."""
    stamp = (now or datetime.now(UTC)).isoformat(timespec="microseconds").replace("+00:00", "Z")
    host = (socket.gethostname() or "-")[:255].replace(" ", "_")
    header = f"<{PRIORITY}>1 {stamp} {host} {APP_NAME} {os.getpid()} {MSG_ID} - "
    return header.encode("ascii", "replace") + canonical_json(entry)


def send(entry: dict[str, Any]) -> bool:
    """Send one witness line to the collector; False when none is configured. Raises OSError."""
    where = target()
    if where is None:
        return False
    scheme, host, port = where
    payload = message(entry)
    if scheme == "udp":
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(payload, (host, port))
        return True
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.sendall(str(len(payload)).encode("ascii") + b" " + payload)  # octet counting (RFC 6587)
    return True
