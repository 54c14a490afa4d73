"""An append-only record of how far the audit log went, kept outside the database.

Every checkpoint head (sequence, Merkle root, statement hash, signature) and every
verified batch's event ids are appended as one JSON line and fsynced. Someone who can
rewrite the database but not this file (another disk, a host mount, `chattr +a`) can
still cut the log's tail or delete events not yet checkpointed, but `verify_log` then
names them: the witness remembers (certificate transparency's signed tree heads, kept
by a party the log operator does not control).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.db import transaction

from agents_sdk.records import canonical_json
from controlplane.audit import conf, witness_http, witness_sinks
from controlplane.audit.models import Checkpoint

logger = logging.getLogger(__name__)

FORMAT = "warden-audit-witness/1"


def checkpoint_head(statement: dict[str, Any], statement_hash: str, signature: str) -> dict[str, Any]:
    """The line a checkpoint leaves in the witness (also what /audit/head/ publishes)."""
    return {
        "type": "checkpoint",
        "sequence": statement["sequence"],
        "kind": statement["kind"],
        "last_event_id": statement["last_event_id"],
        "event_count": statement["event_count"],
        "merkle_root": statement["merkle_root"],
        "created_at": statement["created_at"],
        "key_id": statement["key_id"],
        "statement_hash": statement_hash,
        "signature": signature,
    }


def event_runs(event_ids: Iterable[int]) -> list[list[int]]:
    """Sorted ids as [first, last] runs of consecutive ids (a batch's ids are usually one run)."""
    runs: list[list[int]] = []
    for event_id in sorted(event_ids):
        if runs and runs[-1][1] + 1 == event_id:
            runs[-1][1] = event_id
        else:
            runs.append([event_id, event_id])
    return runs


def batch_line(batch_id: int, event_ids: Iterable[int]) -> dict[str, Any]:
    return {"type": "batch", "batch_id": batch_id, "events": event_runs(event_ids)}


def append(entry: dict[str, Any], path: str | None = None) -> None:
    """Append one line and fsync it (and the directory, when the file is new).

    O_APPEND: lines of concurrent worker processes never overwrite each other.
    """
    target = Path(path or conf.witness_path())
    target.parent.mkdir(parents=True, exist_ok=True)
    created = not target.exists()
    line = canonical_json({"format": FORMAT, **entry}) + b"\n"
    descriptor = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    if created:
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def append_after_commit(entry: dict[str, Any], *, statement: dict[str, Any] | None = None) -> None:
    """Append once the transaction commits: the witness never names what was rolled back.

    `statement`: a checkpoint's signed statement, sent along to the HTTP witness (whose
    collector checks the signature). A failed write is logged as an alert, not raised: the
    log itself is committed.
    """
    def write() -> None:
        try:
            append(entry)
        except OSError as exc:
            logger.error("ALERT the audit witness %s could not be written: %s", conf.witness_path(), exc)
        try:
            witness_sinks.send({"format": FORMAT, **entry})
        except OSError as exc:
            logger.error("ALERT the external audit witness (WARDEN_AUDIT_WITNESS_SYSLOG) could not be written: %s", exc)
        line = {"format": FORMAT, **entry, **({"statement": statement} if statement is not None else {})}
        try:
            witness_http.publish(line, missing_heads)
        except witness_http.Conflict as exc:
            logger.error("ALERT the HTTP audit witness holds another checkpoint head: the log was rewritten: %s", exc)
        except OSError as exc:
            logger.error("ALERT the HTTP audit witness (WARDEN_AUDIT_WITNESS_URL) could not be written: %s", exc)

    transaction.on_commit(write)


def missing_heads(after: int, before: int) -> list[dict[str, Any]]:
    """The signed heads of checkpoints after..before (exclusive), with their statements: what a
    collector that was down missed."""
    return [
        {"format": FORMAT, **checkpoint_head(c.statement, c.statement_hash, c.signature), "statement": c.statement}
        for c in Checkpoint.objects.defer("entries").filter(sequence__gt=after, sequence__lt=before).order_by("sequence")
    ]


def read(path: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """(the entries, the problems: unreadable lines) of a witness file; none if it is absent."""
    target = Path(path or conf.witness_path())
    if not target.exists():
        return [], []
    entries, problems = [], []
    with open(target, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                entry = json.loads(raw)
            except ValueError:
                problems.append(f"witness line {number} is not JSON: the file was damaged or edited")
                continue
            if isinstance(entry, dict) and entry.get("format") == FORMAT:
                entries.append(entry)
            else:
                problems.append(f"witness line {number} is not a {FORMAT} entry")
    return entries, problems
