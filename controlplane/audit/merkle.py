"""Hashes that checkpoints sign: an event's content hash and the RFC 6962 Merkle tree.

Every event gets a content hash: SHA-256 of the canonical JSON of its stored columns
(everything but its id). A checkpoint keeps per event its id, record id and content hash
(`pack_entries`), and signs the Merkle root of those leaves (RFC 6962 style:
leaf = H(0x00 ‖ id ‖ content hash), node = H(0x01 ‖ left ‖ right)).
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from typing import Any

from agents_sdk.records import canonical_json

ENTRY = struct.Struct(">q16s32s")  # event id, record id, content hash


def content_hash(row: dict[str, Any]) -> bytes:
    """SHA-256 of an event's stored columns except its id, as canonical JSON."""
    data = {
        "record_id": str(row["record_id"]),
        "agent_id": str(row["agent_id"]),
        "key_id": row["key_id"],
        "session_id": row["session_id"],
        "seq": row["seq"],
        "kind": row["kind"],
        "time": row["time"].isoformat(),
        "tool": row["tool"],
        "effect": row["effect"],
        "rule_ids": row["rule_ids"],
        "payload": row["payload"],
        "masked_paths": row["masked_paths"],
        "prev_hash": row["prev_hash"],
        "record_hash": row["record_hash"],
        "sealed_sha256": hashlib.sha256(bytes(row["sealed_record"])).hexdigest(),
        "batch_id": row["batch_id"],
        "stored_at": row["stored_at"].isoformat(),
    }
    return hashlib.sha256(canonical_json(data)).digest()


def leaf_hash(event_id: int, digest: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + event_id.to_bytes(8, "big", signed=True) + digest).digest()


def merkle_root(leaves: list[bytes]) -> str:
    """RFC 6962 Merkle tree hash of the leaves (hex); SHA-256 of nothing for no leaves."""
    if not leaves:
        return hashlib.sha256(b"").hexdigest()
    level = leaves
    while len(level) > 1:
        nxt = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()


def pack_entries(entries: list[tuple[int, uuid.UUID, bytes]]) -> bytes:
    return b"".join(ENTRY.pack(event_id, record_id.bytes, digest) for event_id, record_id, digest in entries)


def unpack_entries(data: bytes) -> list[tuple[int, uuid.UUID, bytes]]:
    return [(i, uuid.UUID(bytes=r), d) for i, r, d in ENTRY.iter_unpack(bytes(data))]
