"""Why a record does not continue its session's chain, named for a person."""

from __future__ import annotations

import hashlib
from typing import Any

from agents_sdk.records import GENESIS_HASH, canonical_json
from agents_sdk.verify import BROKEN_CHAIN, SESSION_MISMATCH
from controlplane.audit.models import QuarantineReason
from controlplane.audit.storage import ChainHead

FORKED_CHAIN = str(QuarantineReason.FORKED_CHAIN)


def broken_link(
    record: dict[str, Any],
    head: ChainHead,
    linked: dict[str, tuple[str, int, int | None]],
    in_batch_hash: dict[str, Any],
    quarantined_hash: dict[str, int],
) -> tuple[str, str]:
    """(reason, message) for a record whose prev_hash is not its session head's hash: a
    second chain, a fork or replay, a splice from another session, or missing records."""
    prev = record["prev_hash"]
    session_id = record["session_id"]
    if prev == GENESIS_HASH:
        return FORKED_CHAIN, (
            f"it starts session {session_id!r} again at the genesis hash (seq {record['seq']}), but the session "
            f"already has verified records up to seq {head.last_seq}: a second chain under the same session id"
        )
    if prev in quarantined_hash:
        return BROKEN_CHAIN, (
            f"it continues the record at position {quarantined_hash[prev]} of this batch, which was quarantined"
        )
    target = linked.get(prev)
    if target is None and prev in in_batch_hash:
        other = in_batch_hash[prev].record
        target = (other["session_id"], other["seq"], None)
    if target is not None:
        other_session, other_seq, event_id = target
        where = f"event {event_id}" if event_id else "an earlier record of this batch"
        if other_session != session_id:
            return SESSION_MISMATCH, (
                f"its prev_hash is the hash of {where} (seq {other_seq}) of session {other_session!r}, "
                "not of a record of its own session: it was spliced in"
            )
        return FORKED_CHAIN, (
            f"its prev_hash points to seq {other_seq} ({where}), but the session already continues after it "
            f"up to seq {head.last_seq}: a second branch of the chain (a fork or a replay)"
        )
    if head.last_seq < 0:
        return BROKEN_CHAIN, (
            f"it is the first record of session {session_id!r} received (seq {record['seq']}) but its prev_hash "
            "is not the genesis hash: the session's earlier records are missing"
        )
    message = f"its prev_hash does not match the session's last verified record (seq {head.last_seq})"
    if record["seq"] > head.last_seq + 1:
        message += f"; seq jumps from {head.last_seq} to {record['seq']}, so records are missing"
    return BROKEN_CHAIN, message


def hash_or_none(record: Any) -> str | None:
    if not isinstance(record, dict):
        return None
    try:
        return hashlib.sha256(canonical_json(record)).hexdigest()
    except ValueError:
        return None
