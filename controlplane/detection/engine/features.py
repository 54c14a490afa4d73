"""What the detectors look at in one record: the tool, where it sends, how much, and
whether it read data marked sensitive.

Plain Python (no Django): the bench feeds the same functions with synthetic records.
Payloads come from agents and are hostile by assumption, so every walk is bounded in
depth and size and any non-JSON shape is read as "nothing here".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

# Argument names (at any depth) that say where a call sends something.
URL_KEYS = ("url", "uri", "endpoint", "href", "webhook")
HOST_KEYS = ("host", "hostname", "domain")
EMAIL_KEYS = ("to", "cc", "bcc", "recipient", "recipients", "email")
REPO_KEYS = ("repo", "repository")
# Arguments whose size is what leaves the agent.
BODY_KEYS = ("body", "data", "content", "payload", "attachment", "attachments", "text", "message", "files")
SIZE_KEYS = ("bytes", "size", "content_length")

READ_TOOL = re.compile(r"(read|query|select|get|fetch|export|download|list|search|dump)", re.IGNORECASE)
# Values in a read's arguments that mark the data as sensitive (paths, tables, labels).
SENSITIVE_MARKERS = re.compile(
    r"(secret|credential|password|passwd|\.ssh|\.env\b|private[_-]?key|token|customers?\b|patients?\b|"
    r"phi\b|pii\b|ssn|payroll|salar|card|confidential|sensitive|restricted)",
    re.IGNORECASE,
)
MAX_WALK_ITEMS = 2000
MAX_WALK_DEPTH = 8
MAX_DESTINATION_LENGTH = 200
MAX_DESTINATIONS = 20


@dataclass(slots=True)
class Observation:
    """One call or one decision of an agent, as the detectors need it."""

    agent: str
    time: datetime
    kind: str  # "call" (an intent) or "decision"
    tool: str
    session_id: str
    record_id: str
    event_id: int | None = None
    effect: str = ""
    destinations: list[str] = field(default_factory=list)
    bytes_out: int = 0
    reads: bool = False
    sensitive: bool = False


def observation_of(
    *, agent: str, kind: str, payload: Any, tool: str, time: datetime, session_id: str, record_id: str,
    event_id: int | None = None,
) -> Observation | None:
    """The observation of a stored record, or None for kinds the detectors ignore (result, output)."""
    if not isinstance(payload, dict):
        return None
    if kind == "intent":
        name = payload.get("tool")
        name = name if isinstance(name, str) and name else tool
        args = payload.get("args")
        args = args if isinstance(args, dict) else {}
        reads = bool(READ_TOOL.search(name[:200]))
        return Observation(
            agent=agent, time=time, kind="call", tool=name[:200], session_id=session_id, record_id=record_id,
            event_id=event_id, destinations=destinations_of(args), bytes_out=bytes_out_of(args), reads=reads,
            sensitive=reads and marks_sensitive(args),
        )
    if kind == "decision":
        effect = payload.get("effect")
        if not isinstance(effect, str):
            return None
        return Observation(
            agent=agent, time=time, kind="decision", tool=tool[:200], session_id=session_id, record_id=record_id,
            event_id=event_id, effect=effect[:32],
        )
    return None


def destinations_of(args: dict) -> list[str]:
    """Where a call sends, as `host:…`, `email:…` or `repo:…`, at any depth of the arguments
    (``{"message": {"to": [{"address": "eve@x.example"}]}}``), within MAX_WALK_DEPTH levels and
    MAX_WALK_ITEMS values; at most MAX_DESTINATIONS, first found first."""
    found: dict[str, None] = {}
    _walk_destinations(args, None, False, 0, [MAX_WALK_ITEMS], found)
    return list(found)[:MAX_DESTINATIONS]


def _kind_of(key: str) -> str | None:
    name = key.lower()
    if name in URL_KEYS:
        return "url"
    if name in HOST_KEYS:
        return "host"
    if name in EMAIL_KEYS:
        return "email"
    if name in REPO_KEYS:
        return "repo"
    return None


def _walk_destinations(value: Any, kind: str | None, inherited: bool, depth: int, budget: list[int],
                       found: dict[str, None]) -> None:
    """``kind`` is what the nearest destination-named key above ``value`` says it holds;
    ``inherited`` when a key in between had another name (``{"to": {"address": …}}``)."""
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_WALK_DEPTH or len(found) >= MAX_DESTINATIONS:
        return
    if isinstance(value, str):
        if kind is not None:
            destination = _destination(kind, value, inherited)
            if destination:
                found.setdefault(destination, None)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                continue
            own = _kind_of(key)
            _walk_destinations(item, own or kind, own is None and kind is not None, depth + 1, budget, found)
            if budget[0] < 0:
                return
    elif isinstance(value, list):
        for item in value:
            _walk_destinations(item, kind, inherited, depth + 1, budget, found)
            if budget[0] < 0:
                return


def _destination(kind: str, text: str, inherited: bool) -> str:
    # Under a key of another name ({"webhook": {"method": "POST"}}), only what looks like a
    # destination counts: a URL with a scheme, a dotted host name.
    if kind == "url":
        if inherited and "://" not in text:
            return ""
        host = _host_of_url(text)
        return "host:" + host if host else ""
    if kind == "host":
        host = _clean_host(text)
        return "host:" + host if host and (not inherited or "." in host) else ""
    if kind == "email":
        if "@" not in text:
            return ""
        domain = _clean_host(text.rsplit("@", 1)[1])
        return "email:" + domain if domain else ""
    repo = text.strip().lower()[:MAX_DESTINATION_LENGTH]
    return "repo:" + repo if repo and repo.isprintable() and (not inherited or "/" in repo) else ""


def bytes_out_of(args: dict) -> int:
    """The size of what a call sends: body-like arguments (UTF-8 length) plus declared sizes."""
    total = 0
    for key, value in args.items():
        if not isinstance(key, str):
            continue
        name = key.lower()
        if name in SIZE_KEYS and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 40:
            total += value
        elif name in BODY_KEYS:
            total += _size(value)
    return total


def marks_sensitive(args: dict) -> bool:
    """True if a read's arguments name sensitive data (a secrets path, a customer table, a label)."""
    budget = [MAX_WALK_ITEMS]
    return _any_sensitive(args, 0, budget)


def _any_sensitive(value: Any, depth: int, budget: list[int]) -> bool:
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_WALK_DEPTH:
        return False
    if isinstance(value, str):
        return bool(SENSITIVE_MARKERS.search(value[:1000]))
    if isinstance(value, dict):
        return any(
            (isinstance(k, str) and SENSITIVE_MARKERS.search(k[:200])) or _any_sensitive(v, depth + 1, budget)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_any_sensitive(v, depth + 1, budget) for v in value)
    return False


def _size(value: Any, depth: int = 0) -> int:
    if depth > MAX_WALK_DEPTH:
        return 0
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, dict):
        return sum(_size(v, depth + 1) for v in list(value.values())[:MAX_WALK_ITEMS])
    if isinstance(value, list):
        return sum(_size(v, depth + 1) for v in value[:MAX_WALK_ITEMS])
    return 0


def _host_of_url(text: str) -> str:
    text = text.strip()[:2000]
    if "://" not in text:
        text = "//" + text
    try:
        host = urlsplit(text).hostname or ""
    except ValueError:
        return ""
    return _clean_host(host)


def _clean_host(text: str) -> str:
    host = text.strip().strip(".").lower()[:MAX_DESTINATION_LENGTH]
    # A destination is shown in alerts and URLs: keep printable, space-free names only.
    if not host or not host.isprintable() or any(c.isspace() or c in "/\\@" for c in host):
        return ""
    return host
