"""The HTTP witness: every witness line is also POSTed to a collector run apart from the
control plane (`witness_collector`, or any service speaking its API), which keeps it
append-only where neither the database's roles nor the web hosts can rewrite it
(WARDEN_AUDIT_WITNESS_URL, e.g. https://witness.example/logs/prod).

A checkpoint head travels with its statement, so the collector checks the signature
against the pinned checkpoint key before keeping it. A collector that is down costs
retries and an alert, never the log's commit (and for PAUSE seconds after a failure batch
lines are not sent, so workers do not wait on it batch after batch); the next checkpoint first re-sends the heads
the collector lacks (it says how far it holds), from the signed checkpoints in the
database, so an outage leaves no gap in the heads (batch lines sent during it are lost).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from agents_sdk.records import canonical_json
from controlplane.settings.registry import setting

ATTEMPTS = 3
BACKOFF = 0.25  # seconds before the second attempt; doubled before each later one
TIMEOUT = 3.0
PAUSE = 30.0  # seconds batch lines are not sent after the collector failed
_failed_until: dict[str, float] = {}  # by collector URL, in this process


class CollectorError(OSError):
    """The collector could not be reached, or refused a line (the message says which)."""


class Conflict(CollectorError):
    """The collector holds a different head for this sequence: the log was rewritten."""


def base_url() -> str:
    return str(setting("WARDEN_AUDIT_WITNESS_URL") or "").strip().rstrip("/")


def _request(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    token = str(setting("WARDEN_AUDIT_WITNESS_TOKEN") or "")
    if body is not None and token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 (an operator's URL)
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post(entry: dict[str, Any], url: str | None = None) -> bool:
    """POST one line, retrying connection failures and 5xx; True if the collector stored it now.

    Raises Conflict (409) at once, CollectorError for any other refusal or after the last attempt.
    """
    target = f"{url or base_url()}/entries"
    body = canonical_json(entry)
    problem = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(BACKOFF * 2 ** (attempt - 1))
        try:
            status, answer = _request("POST", target, body)
        except OSError as exc:  # refused, reset, timed out, DNS
            problem = f"{target}: {exc}"
            continue
        if status in (200, 201):
            return status == 201
        detail = answer[:300].decode("utf-8", "replace")
        if status == 409:
            raise Conflict(f"{target} answered 409: {detail}")
        problem = f"{target} answered {status}: {detail}"
        if status < 500:
            raise CollectorError(problem)
    raise CollectorError(f"{problem} (after {ATTEMPTS} attempts)")


def held_sequence(url: str | None = None) -> int:
    """The newest checkpoint sequence the collector holds (0: none). Raises CollectorError."""
    target = f"{url or base_url()}/head"
    try:
        status, answer = _request("GET", target)
    except OSError as exc:
        raise CollectorError(f"{target}: {exc}") from exc
    if status == 404:
        return 0
    if status != 200:
        raise CollectorError(f"{target} answered {status}")
    return int(json.loads(answer)["sequence"])


def fetch(url: str) -> list[dict[str, Any]]:
    """Every line the collector holds. Raises CollectorError."""
    target = f"{url.rstrip('/')}/entries"
    try:
        status, answer = _request("GET", target)
    except OSError as exc:
        raise CollectorError(f"{target}: {exc}") from exc
    if status != 200:
        raise CollectorError(f"{target} answered {status}")
    try:
        return [json.loads(line) for line in answer.splitlines() if line.strip()]
    except ValueError as exc:
        raise CollectorError(f"{target} sent a line that is not JSON: {exc}") from exc


def publish(entry: dict[str, Any], missing_heads: Callable[[int, int], list[dict[str, Any]]]) -> bool:
    """Send `entry`; before a checkpoint head, the heads the collector lacks (`missing_heads(
    after, before)` gives them from the database). False when no collector is configured, or
    when a batch line is skipped because the collector failed less than PAUSE seconds ago: a
    worker must not spend its retries on every batch while it is down (heads are always tried,
    and re-sent once it is back). Raises CollectorError."""
    url = base_url()
    if not url:
        return False
    is_head = entry.get("type") == "checkpoint"
    if not is_head and time.monotonic() < _failed_until.get(url, 0.0):
        return False
    try:
        if is_head:
            held = held_sequence(url)
            for head in missing_heads(held, entry["sequence"]):
                post(head, url)
        post(entry, url)
    except Conflict:
        raise
    except CollectorError:
        _failed_until[url] = time.monotonic() + PAUSE
        raise
    _failed_until.pop(url, None)
    return True
