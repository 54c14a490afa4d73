"""Offline verification of signed action records.

``verify_records`` needs only the records and the agents' public keys. It checks each
record's form, its Ed25519 signature, and that it continues its session's chain
(``prev_hash`` and ``seq``), and names the first record that fails. It does no I/O;
the CLI (``warden audit verify``) reads files and calls it.

A chain is the records with the same ``agent`` and ``session_id``, in log order. Records
of several sessions and agents may be interleaved in one log.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agents_sdk.errors import CanonicalJSONError, VerificationError
from agents_sdk.keys import InvalidPublicKey, key_fingerprint, parse_public_key, raw_public_key
from agents_sdk.records import GENESIS_HASH, canonical_json, record_form_problem

# Why a record failed. Checked in this order, so a record is reported for the first that applies.
MALFORMED = "malformed"
UNKNOWN_KEY = "unknown_key"
BAD_SIGNATURE = "bad_signature"
AGENT_MISMATCH = "agent_mismatch"
SESSION_MISMATCH = "session_mismatch"
BROKEN_CHAIN = "broken_chain"
SEQUENCE_GAP = "sequence_gap"
REASONS = (MALFORMED, UNKNOWN_KEY, BAD_SIGNATURE, AGENT_MISMATCH, SESSION_MISMATCH, BROKEN_CHAIN, SEQUENCE_GAP)

PublicKeyLike = Ed25519PublicKey | str | bytes


@dataclass(frozen=True)
class RecordFailure:
    """The first record that failed verification.

    ``index`` is its 0-based position in the sequence given to ``verify_records``;
    ``reason`` is one of ``REASONS``; ``message`` explains it for a person.
    ``record_id``, ``session_id`` and ``seq`` are taken from the record when it has them.
    """

    index: int
    reason: str
    message: str
    record_id: str | None = None
    session_id: str | None = None
    seq: int | None = None

    def __str__(self) -> str:
        return f"record {self.index} ({_describe(self.record_id, self.session_id, self.seq)}): {self.reason}: {self.message}"


@dataclass(frozen=True)
class VerificationResult:
    """The outcome of ``verify_records``; true when every record verified.

    ``records`` and ``sessions`` count what verified before the first failure (all of
    them when ``ok``); ``failure`` names the first bad record, or is None.
    """

    records: int
    sessions: int
    failure: RecordFailure | None = None

    @property
    def ok(self) -> bool:
        """True when every record verified."""
        return self.failure is None

    def __bool__(self) -> bool:
        return self.ok

    def raise_for_failure(self) -> None:
        """Raise VerificationError (with ``failure`` set) unless every record verified."""
        if self.failure is not None:
            raise VerificationError(str(self.failure), failure=self.failure)


def public_key_map(keys: Sequence[PublicKeyLike]) -> dict[str, Ed25519PublicKey]:
    """Return ``{key_id: key}`` for public keys given as objects, raw bytes, base64 or PEM.

    Raises InvalidPublicKey if one is not an Ed25519 public key.
    """
    result = {}
    for key in keys:
        parsed = _parse_key(key)
        result[key_fingerprint(raw_public_key(parsed))] = parsed
    return result


def verify_records(
    records: Sequence[Any],
    public_keys: Mapping[str, PublicKeyLike],
    *,
    key_agents: Mapping[str, str] | None = None,
) -> VerificationResult:
    """Verify signed records offline and name the first bad one.

    ``public_keys`` maps key ids to the trusted public keys (objects, raw bytes, base64
    or PEM). ``key_agents`` optionally maps key ids to the agent each key belongs to;
    a record signed with such a key but naming another agent fails. An item of
    ``records`` that is not a mapping (for example a RecordFormatError for an unparseable
    line) is reported as malformed. Verification stops at the first bad record: the
    records after it cannot be trusted to chain correctly.

    Raises VerificationError if a key in ``public_keys`` does not match its key id
    (a mistake by the caller, not in the records). Does no I/O and does not modify
    the records.
    """
    checker = _ChainChecker(_trusted_keys(public_keys), key_agents or {})
    for index, record in enumerate(records):
        problem = checker.check(index, record)
        if problem is not None:
            reason, message = problem
            failure = RecordFailure(
                index=index,
                reason=reason,
                message=message,
                record_id=_field(record, "record_id", str),
                session_id=_field(record, "session_id", str),
                seq=_field(record, "seq", int),
            )
            return VerificationResult(records=index, sessions=checker.sessions, failure=failure)
    return VerificationResult(records=len(records), sessions=checker.sessions)


class _ChainChecker:
    """Checks records one at a time, remembering the end of every chain seen so far."""

    def __init__(self, trusted: Mapping[str, Ed25519PublicKey], key_agents: Mapping[str, str]) -> None:
        self.trusted = trusted
        self.key_agents = key_agents
        # chain (agent, session_id) -> (hash of its last record, that record's seq, its index)
        self.chains: dict[tuple[str, str], tuple[str, int, int]] = {}
        # hash of every verified record -> (its chain, seq, index), to explain a broken link
        self.seen: dict[str, tuple[tuple[str, str], int, int]] = {}

    @property
    def sessions(self) -> int:
        return len(self.chains)

    def check(self, index: int, record: Any) -> tuple[str, str] | None:
        """Return (reason, message) if the record is bad; otherwise extend its chain and return None."""
        problem = record_form_problem(record)
        if problem:
            return MALFORMED, problem
        try:
            unsigned = canonical_json({k: v for k, v in record.items() if k != "signature"})
            whole = canonical_json(dict(record))
        except CanonicalJSONError as exc:
            return MALFORMED, str(exc)

        key_id = record["key_id"]
        key = self.trusted.get(key_id)
        if key is None:
            return UNKNOWN_KEY, f"signed with key {key_id}, which is not among the public keys given"
        try:
            key.verify(base64.b64decode(record["signature"], validate=True), unsigned)
        except InvalidSignature:
            return BAD_SIGNATURE, f"the signature does not verify with key {key_id[:16]}…; the record was altered"
        owner = self.key_agents.get(key_id)
        if owner is not None and owner != record["agent"]:
            return AGENT_MISMATCH, f"claims agent {record['agent']!r} but key {key_id[:16]}… belongs to {owner!r}"

        chain = (record["agent"], record["session_id"])
        seq = record["seq"]
        last = self.chains.get(chain)
        if record["prev_hash"] != (last[0] if last else GENESIS_HASH):
            linked = self.seen.get(record["prev_hash"])
            if linked is not None and linked[0] != chain:
                return SESSION_MISMATCH, (
                    f"its prev_hash is the hash of record {linked[2]} of session {linked[0][1]!r} "
                    f"(agent {linked[0][0]!r}), not of a record of its own session"
                )
            return BROKEN_CHAIN, _broken_chain_message(last, seq, linked)
        expected_seq = last[1] + 1 if last else 0
        if seq != expected_seq:
            return SEQUENCE_GAP, f"expected seq {expected_seq}, found {seq}"

        digest = hashlib.sha256(whole).hexdigest()
        self.chains[chain] = (digest, seq, index)
        self.seen[digest] = (chain, seq, index)
        return None


def _broken_chain_message(
    last: tuple[str, int, int] | None, seq: int, linked: tuple[tuple[str, str], int, int] | None
) -> str:
    if last is None:
        return (
            f"it is the first record of its session in this log (seq {seq}) but its prev_hash is not "
            "the genesis hash: the session's earlier records are missing"
        )
    message = f"its prev_hash does not match record {last[2]} (seq {last[1]}), the previous record of its session"
    if linked is not None:
        message += (
            f"; it chains to record {linked[2]} (seq {linked[1]}), an earlier record of its session, "
            "so it is repeated or records were removed or moved"
        )
    elif seq > last[1] + 1:
        message += f"; seq jumps from {last[1]} to {seq}, so records are missing or out of order"
    elif seq <= last[1]:
        message += f"; seq {seq} does not follow {last[1]}, so records were reordered or repeated"
    return message


def _trusted_keys(public_keys: Mapping[str, PublicKeyLike]) -> dict[str, Ed25519PublicKey]:
    trusted = {}
    for key_id, key in public_keys.items():
        try:
            parsed = _parse_key(key)
        except InvalidPublicKey as exc:
            raise VerificationError(f"public key for {key_id}: {exc}") from exc
        actual = key_fingerprint(raw_public_key(parsed))
        if actual != key_id:
            raise VerificationError(f"the public key given for key id {key_id} has key id {actual}")
        trusted[key_id] = parsed
    return trusted


def _parse_key(key: PublicKeyLike) -> Ed25519PublicKey:
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, bytes):
        if len(key) != 32:
            raise InvalidPublicKey(f"an Ed25519 public key is 32 bytes, this one is {len(key)}")
        return Ed25519PublicKey.from_public_bytes(key)
    return parse_public_key(key)


def _field(record: Any, name: str, kind: type) -> Any:
    if isinstance(record, Mapping):
        value = record.get(name)
        if isinstance(value, kind) and not isinstance(value, bool):
            return value
    return None


def _describe(record_id: str | None, session_id: str | None, seq: int | None) -> str:
    return f"record_id {record_id or '?'}, session {session_id or '?'}, seq {'?' if seq is None else seq}"


__all__ = [
    "REASONS",
    "RecordFailure",
    "VerificationResult",
    "public_key_map",
    "verify_records",
]
