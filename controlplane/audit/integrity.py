"""Checking the stored log against its signed checkpoints and the witness, naming what changed.

A check says which event was changed (its content hash differs; the columns that differ
from the record as signed are named), removed (an entry with no row, unless a signed
retention checkpoint removed it), inserted (a row in a covered range with no entry) or
moved (a row holds the content another entry names, in any checkpoint). Checkpoint
signatures are checked against trusted keys only: pinned in configuration
(WARDEN_AUDIT_CHECKPOINT_PUBLIC_KEYS) or given by the caller, never rows the app can
write, unless nothing is pinned (the report says so). The witness file (see `witness`)
names a cut tail, removed checkpoints and deleted events not yet checkpointed.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.fernet import InvalidToken
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agents_sdk.records import canonical_json, parse_jsonl_line
from agents_sdk.verify import public_key_map
from controlplane.audit import conf, records, storage, witness, witness_http
from controlplane.audit.merkle import content_hash, leaf_hash, merkle_root, unpack_entries
from controlplane.audit.models import AuditEvent, Batch, Checkpoint, CheckpointKey, CheckpointKind
from controlplane.identity.models import Agent


@dataclass
class Problem:
    """One thing wrong with the stored log, named for a person."""

    problem: str  # changed | removed | inserted | moved | checkpoint | truncated | witness
    message: str
    event_id: int | None = None
    record_id: str | None = None
    checkpoint: int | None = None
    fields: list[str] = field(default_factory=list)
    through_event_id: int | None = None  # the last event of a run of events named at once


@dataclass
class IntegrityReport:
    ok: bool
    checkpoints: int
    events_checked: int
    events_removed_by_retention: int
    events_not_checkpointed: int
    problems: list[Problem]
    key_source: str = "database"  # pinned | given | database (nothing pinned: weaker)
    witness_entries: int = 0
    first_affected_event_id: int | None = None
    last_affected_event_id: int | None = None
    first_affected_checkpoint: int | None = None
    last_affected_checkpoint: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def trusted_keys(public_keys: list[str] | tuple[str, ...] | None = None) -> tuple[dict[str, Ed25519PublicKey], str]:
    """({key_id: key}, where they come from): the given keys, else the pinned ones, else the
    database's (the weakest: the app role can insert a key row). Raises InvalidPublicKey."""
    if public_keys:
        return public_key_map(list(public_keys)), "given"
    pinned = conf.pinned_checkpoint_keys()
    if pinned:
        return public_key_map(list(pinned)), "pinned"
    return public_key_map(list(CheckpointKey.objects.values_list("public_key", flat=True))), "database"


def verify_log(
    *, max_problems: int = 1000, public_keys: list[str] | tuple[str, ...] | None = None,
    witness_path: str | None = None, witness_url: str | None = None,
) -> IntegrityReport:
    """Check the stored log against the signed checkpoints and the witnesses (the file and the
    HTTP collector, `witness_url` or WARDEN_AUDIT_WITNESS_URL; "" for none); name every difference."""
    keys, key_source = trusted_keys(public_keys)
    problems: list[Problem] = []
    checkpoints = list(Checkpoint.objects.order_by("sequence"))
    retained: dict[int, int] = {}
    # Every entry of every events checkpoint by content hash: a row holding another's content moved.
    recorded: dict[bytes, tuple[int, Any, int]] = {}
    previous = None
    for checkpoint in checkpoints:
        problems.extend(_checkpoint_problems(checkpoint, previous, keys))
        for event_id, record_id, digest in unpack_entries(checkpoint.entries):
            if checkpoint.kind == CheckpointKind.RETENTION:
                retained[event_id] = checkpoint.sequence
            else:
                recorded[digest] = (event_id, record_id, checkpoint.sequence)
        previous = checkpoint

    columns = _ColumnCheck()
    checked = 0
    removed_by_retention = 0
    covered = 0
    for checkpoint in checkpoints:
        if checkpoint.kind != CheckpointKind.EVENTS or not checkpoint.event_count:
            continue
        rows = {row["id"]: row for row in storage.events_between(checkpoint.first_event_id - 1, checkpoint.last_event_id)}
        for event_id, record_id, digest in unpack_entries(checkpoint.entries):
            row = rows.pop(event_id, None)
            if row is None:
                if event_id in retained:
                    removed_by_retention += 1
                    continue
                problems.append(Problem(
                    "removed", f"event {event_id} (record_id {record_id}) was removed from the log",
                    event_id, str(record_id), checkpoint.sequence,
                ))
                continue
            checked += 1
            actual = content_hash(row)
            if actual == digest:
                continue
            moved = recorded.get(actual)
            if moved is not None and moved[0] != event_id:
                problems.append(Problem(
                    "moved",
                    f"event {event_id} now holds what checkpoint {moved[2]} recorded as event {moved[0]} "
                    f"(record_id {moved[1]}): rows were swapped or moved",
                    event_id, str(record_id), checkpoint.sequence,
                ))
                continue
            fields = columns.changed(row, checkpointed=True)
            problems.append(Problem(
                "changed",
                f"event {event_id} (record_id {record_id}) was changed after checkpoint {checkpoint.sequence}: "
                + (f"{', '.join(fields)} differ from the record as signed and stored" if fields
                   else "a column no signature covers (masked_paths or batch_id) differs"),
                event_id, str(record_id), checkpoint.sequence, fields,
            ))
        for event_id, row in sorted(rows.items()):
            problems.append(Problem(
                "inserted",
                f"event {event_id} (record_id {row['record_id']}) is in the range of checkpoint "
                f"{checkpoint.sequence} but was not in it: inserted afterwards",
                event_id, str(row["record_id"]), checkpoint.sequence,
            ))
        covered = max(covered, checkpoint.last_event_id)
        if len(problems) >= max_problems:
            break

    # Events after the last checkpoint are checked against their sealed signed record only.
    uncovered = 0
    for row in storage.events_between(covered, 2**62):
        uncovered += 1
        fields = columns.changed(row, checkpointed=False)
        if fields:
            problems.append(Problem(
                "changed",
                f"event {row['id']} (record_id {row['record_id']}, not yet checkpointed): "
                f"{', '.join(fields)} differ from the record as signed",
                row["id"], str(row["record_id"]), None, fields,
            ))
        if len(problems) >= max_problems:
            break

    entries, damaged = witness.read(witness_path)
    problems.extend(Problem("witness", message) for message in damaged)
    # The HTTP witness's lines join the file's: a head either holds that differs is named.
    collector = witness_http.base_url() if witness_url is None else witness_url
    if collector:
        try:
            entries += witness_http.fetch(collector)
        except witness_http.CollectorError as exc:
            problems.append(Problem("witness", f"the HTTP witness could not be read, so it was not compared: {exc}"))
    problems.extend(_witness_problems(entries, checkpoints, covered, retained))
    problems = problems[:max_problems]
    events = [i for p in problems for i in (p.event_id, p.through_event_id) if i is not None]
    sequences = [p.checkpoint for p in problems if p.checkpoint is not None]
    return IntegrityReport(
        ok=not problems, checkpoints=len(checkpoints), events_checked=checked,
        events_removed_by_retention=removed_by_retention, events_not_checkpointed=uncovered,
        problems=problems, key_source=key_source, witness_entries=len(entries),
        first_affected_event_id=min(events, default=None), last_affected_event_id=max(events, default=None),
        first_affected_checkpoint=min(sequences, default=None), last_affected_checkpoint=max(sequences, default=None),
    )


def _witness_problems(
    entries: list[dict[str, Any]], checkpoints: list[Checkpoint], covered: int, retained: dict[int, int]
) -> list[Problem]:
    """What the witness remembers and the database no longer holds."""
    found: list[Problem] = []
    stored = {c.sequence: c for c in checkpoints}
    last_stored = max(stored, default=0)
    heads: dict[int, dict[str, Any]] = {}
    for entry in entries:
        if entry.get("type") != "checkpoint" or not isinstance(entry.get("sequence"), int):
            continue
        first = heads.setdefault(entry["sequence"], entry)  # the first one recorded is the genuine one
        if first.get("statement_hash") != entry.get("statement_hash"):
            found.append(Problem("checkpoint", (
                f"the witness recorded checkpoint {entry['sequence']} twice with different contents: the "
                "checkpoints were replaced and signed again"
            ), checkpoint=entry["sequence"]))
    cut = sorted(sequence for sequence in heads if sequence > last_stored)
    if cut:
        last_event = max((heads[s].get("last_event_id") or 0 for s in cut), default=0)
        found.append(Problem("truncated", (
            f"the log's tail was cut: the witness holds checkpoint(s) {cut[0]}…{cut[-1]} (events up to id "
            f"{last_event}), the database ends at checkpoint {last_stored}"
        ), checkpoint=cut[0]))
    for sequence, head in sorted(heads.items()):
        if sequence > last_stored:
            continue
        checkpoint = stored.get(sequence)
        if checkpoint is None:
            found.append(Problem("checkpoint", (
                f"checkpoint {sequence} is in the witness but not in the database: it was removed"
            ), checkpoint=sequence))
        elif checkpoint.statement_hash != head.get("statement_hash"):
            found.append(Problem("checkpoint", (
                f"checkpoint {sequence} differs from the one the witness recorded: it was replaced"
            ), checkpoint=sequence))
    # Events the witness saw stored after the last checkpoint must still be there.
    witnessed: dict[int, int] = {}
    for entry in entries:
        if entry.get("type") != "batch":
            continue
        for first, last in entry.get("events") or []:
            for event_id in range(max(first, covered + 1), last + 1):
                witnessed[event_id] = entry.get("batch_id")
    if witnessed:
        present = set(AuditEvent.objects.filter(id__gt=covered).values_list("id", flat=True))
        missing: dict[int, list[int]] = {}
        for event_id in sorted(witnessed):
            if event_id not in present and event_id not in retained:
                missing.setdefault(witnessed[event_id], []).append(event_id)
        for batch_id, event_ids in missing.items():
            for run_first, run_last in witness.event_runs(event_ids):
                found.append(Problem("removed", (
                    f"event(s) {run_first}…{run_last} of batch {batch_id} were stored (the witness recorded them) "
                    "but are gone, and no checkpoint in the database covers them: deleted"
                ), event_id=run_first, through_event_id=run_last))
    return found


def _checkpoint_problems(
    checkpoint: Checkpoint, previous: Checkpoint | None, keys: dict[str, Ed25519PublicKey]
) -> list[Problem]:
    found = []
    expected_sequence = previous.sequence + 1 if previous else 1
    if checkpoint.sequence != expected_sequence:
        found.append(Problem("checkpoint", (
            f"checkpoint {checkpoint.sequence} follows checkpoint {expected_sequence - 1}: "
            f"checkpoint(s) {expected_sequence}…{checkpoint.sequence - 1} were removed"
        ), checkpoint=checkpoint.sequence))
    statement = checkpoint.statement
    body = canonical_json(statement)
    key_id = statement.get("key_id") if isinstance(statement, dict) else None
    public = keys.get(key_id) if isinstance(key_id, str) else None
    if public is None:
        found.append(Problem("checkpoint", (
            f"checkpoint {checkpoint.sequence} is signed with key {str(key_id)[:16]}…, which is not a trusted "
            "checkpoint key: it was signed by someone without the control plane's key (or the key was rotated "
            "without pinning the new one)"
        ), checkpoint=checkpoint.sequence))
    else:
        try:
            public.verify(base64.b64decode(checkpoint.signature), body)
        except (InvalidSignature, ValueError):
            found.append(Problem("checkpoint", (
                f"checkpoint {checkpoint.sequence}: its signature does not verify with the control plane key "
                f"{key_id[:16]}…: the checkpoint was altered"
            ), checkpoint=checkpoint.sequence))
    entries = bytes(checkpoint.entries)
    leaves = [leaf_hash(i, d) for i, _, d in unpack_entries(entries)]
    mismatched = [
        name for name, actual in (
            ("entries", hashlib.sha256(entries).hexdigest() != statement.get("entries_sha256")),
            ("merkle_root", merkle_root(leaves) != statement.get("merkle_root")),
            ("columns", (checkpoint.sequence, checkpoint.kind, checkpoint.event_count, checkpoint.first_event_id,
                         checkpoint.last_event_id, checkpoint.merkle_root) != (
                statement.get("sequence"), statement.get("kind"), statement.get("event_count"),
                statement.get("first_event_id"), statement.get("last_event_id"), statement.get("merkle_root"))),
            ("statement_hash", hashlib.sha256(body).hexdigest() != checkpoint.statement_hash),
        ) if actual
    ]
    if mismatched:
        found.append(Problem("checkpoint", (
            f"checkpoint {checkpoint.sequence}: {', '.join(mismatched)} do not match its signed statement"
        ), checkpoint=checkpoint.sequence))
    expected_previous = previous.statement_hash if previous else None
    if previous is not None and statement.get("previous") != expected_previous:
        found.append(Problem("checkpoint", (
            f"checkpoint {checkpoint.sequence} does not chain to checkpoint {previous.sequence}"
        ), checkpoint=checkpoint.sequence))
    return found


def expected_columns(original: dict[str, Any], masked_paths: list[str]) -> dict[str, Any]:
    """What the stored columns of an event must say, derived from the record as signed."""
    payload, _ = records.mask_payload(original["payload"], list(masked_paths or []), frozenset())
    return {
        "record_id": original["record_id"],
        "key_id": original["key_id"],
        "session_id": original["session_id"],
        "seq": original["seq"],
        "kind": original["kind"],
        "time": records.record_time(original),
        "effect": original["payload"].get("effect", "") if original["kind"] == "decision" else "",
        "rule_ids": records.rule_ids(original),
        "payload": payload,
        "prev_hash": original["prev_hash"],
        "record_hash": hashlib.sha256(canonical_json(original)).hexdigest(),
    }


class _ColumnCheck:
    """Names the columns of a row that disagree with what they must hold: the fields of its
    sealed, signed original; its agent (the record names it); its tool (the session's
    intent); its stored_at (when its batch was verified). Agents and batches are read once."""

    def __init__(self) -> None:
        self._agents: dict[Any, str] = {}
        self._verified_at: dict[int, Any] = {}

    def changed(self, row: dict[str, Any], *, checkpointed: bool) -> list[str]:
        try:
            original = parse_jsonl_line(records.unseal(row["sealed_record"]))
        except (InvalidToken, ValueError):
            return ["sealed_record"]
        expected = expected_columns(original, row["masked_paths"])
        actual = dict(row, record_id=str(row["record_id"]))
        fields = [name for name, value in expected.items() if actual.get(name) != value]
        if self._agent_name(row["agent_id"]) != original["agent"]:
            fields.append("agent_id")
        if original["kind"] == "intent":
            if row["tool"] != str(original["payload"].get("tool", ""))[:200]:
                fields.append("tool")
        elif checkpointed and row["tool"] != self._session_tool(original):
            fields.append("tool")
        if row["stored_at"] != self._batch_verified_at(row["batch_id"]):
            fields.append("stored_at")
        return fields

    def _agent_name(self, agent_id) -> str | None:
        if agent_id not in self._agents:
            self._agents[agent_id] = Agent.objects.filter(pk=agent_id).values_list("name", flat=True).first()
        return self._agents[agent_id]

    def _batch_verified_at(self, batch_id: int):
        if batch_id not in self._verified_at:
            self._verified_at[batch_id] = Batch.objects.filter(pk=batch_id).values_list("verified_at", flat=True).first()
        return self._verified_at[batch_id]

    @staticmethod
    def _session_tool(original: dict[str, Any]) -> str:
        """The tool of the session's last intent before this record, from its signed original."""
        sealed = (
            AuditEvent.objects.filter(agent__name=original["agent"], session_id=original["session_id"],
                                      kind="intent", seq__lt=original["seq"])
            .order_by("-seq").values_list("sealed_record", flat=True).first()
        )
        if sealed is None:
            return ""
        try:
            intent = parse_jsonl_line(records.unseal(sealed))
        except (InvalidToken, ValueError):
            return ""
        return str(intent["payload"].get("tool", ""))[:200]
