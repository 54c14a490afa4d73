"""Signed, hash-chained action records.

Every action an agent takes is written as a record: the intent to call a tool, the
policy decision, the result, and the final output. Each record is canonical JSON,
signed with the agent's Ed25519 key, and carries the SHA-256 of the previous record of
its session, so removing, reordering or editing a record breaks the chain.

The exact format is a contract with the control plane's audit pipeline; it is
specified in docs/signed-records.md. ``agents_sdk.verify`` checks it.

    signer = ActionSigner(identity)
    with signer.session(session_id="ticket-4711") as session:
        session.intent("file_delete", {"path": "/tmp/x"})
        session.decision("allow", reasons=[])
        session.result("deleted 1 file")
        session.output("Done.")
    write_jsonl("session.jsonl", signer.session_log())

The package's modules follow the ideas: ``form`` (fields, kinds, what the store holds),
``canonical`` (encoding, signing bytes, chain hash), ``signer`` and ``jsonl``.
"""

from __future__ import annotations

from agents_sdk.records.canonical import canonical_json, record_hash, signable_payload, signing_bytes, utc_timestamp
from agents_sdk.records.form import (
    DECISION_EFFECTS,
    GENESIS_HASH,
    HEX64,
    KIND_REQUIRED_FIELDS,
    MAX_NAME_LENGTH,
    MAX_PAYLOAD_CHARACTERS,
    MAX_PAYLOAD_DEPTH,
    MAX_SESSION_ID_LENGTH,
    MAX_STRING_LENGTH,
    RECORD_FIELDS,
    RECORD_KINDS,
    RFC3339,
    parse_time,
    payload_problem,
    record_form_problem,
    text_problem,
    value_problem,
)
from agents_sdk.records.jsonl import JSONLSink, iter_jsonl, loads_strict, parse_jsonl_line, read_jsonl, write_jsonl
from agents_sdk.records.signer import ActionSigner, SignedSession

__all__ = [
    "JSONLSink",
    "DECISION_EFFECTS",
    "GENESIS_HASH",
    "HEX64",
    "KIND_REQUIRED_FIELDS",
    "MAX_NAME_LENGTH",
    "MAX_PAYLOAD_CHARACTERS",
    "MAX_PAYLOAD_DEPTH",
    "MAX_SESSION_ID_LENGTH",
    "MAX_STRING_LENGTH",
    "RECORD_FIELDS",
    "RECORD_KINDS",
    "RFC3339",
    "ActionSigner",
    "SignedSession",
    "canonical_json",
    "iter_jsonl",
    "loads_strict",
    "parse_jsonl_line",
    "parse_time",
    "payload_problem",
    "read_jsonl",
    "record_form_problem",
    "record_hash",
    "signable_payload",
    "signing_bytes",
    "text_problem",
    "utc_timestamp",
    "value_problem",
    "write_jsonl",
]
