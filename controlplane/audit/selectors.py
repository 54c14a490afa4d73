"""Reads of the audit log that are more than a filter."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from django.db.models import Max, Q, QuerySet

from agents_sdk.records import parse_jsonl_line
from controlplane.audit import conf, records, witness
from controlplane.audit.models import (
    AuditEvent,
    Batch,
    Checkpoint,
    CheckpointKind,
    QuarantinedRecord,
    RetentionPolicy,
)
from controlplane.identity.models import Agent
from controlplane.opa import selectors as opa_selectors

TIMELINE_LIMIT = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EXPORT_LIMIT = 200_000


def events() -> QuerySet[AuditEvent]:
    """Events for search, annotated with whether a checkpoint covers them yet."""
    return AuditEvent.objects.select_related("agent").defer("sealed_record")


def events_by_keys(queryset: QuerySet[AuditEvent], keys: list[tuple[int, Any]]) -> list[AuditEvent]:
    """The events of `keys`, (id, time) pairs, in the order given: each looked up by its key,
    the times naming the months to read (one query)."""
    if not keys:
        return []
    found = {
        event.pk: event
        for event in queryset.filter(pk__in=[pk for pk, _ in keys], time__in={moment for _, moment in keys}).order_by()
    }
    return [found[pk] for pk, _ in keys if pk in found]


def checkpointed_upto() -> int:
    return Checkpoint.objects.filter(kind=CheckpointKind.EVENTS).aggregate(top=Max("last_event_id"))["top"] or 0


def latest_checkpoint_head() -> dict[str, Any] | None:
    """The newest checkpoint's head as published (the same fields the witness keeps), or None."""
    checkpoint = Checkpoint.objects.defer("entries").order_by("-sequence").first()
    if checkpoint is None:
        return None
    return {
        **witness.checkpoint_head(checkpoint.statement, checkpoint.statement_hash, checkpoint.signature),
        "statement": checkpoint.statement,
    }


def quarantined() -> QuerySet[QuarantinedRecord]:
    return QuarantinedRecord.objects.select_related("agent").defer("sealed_record")


def checkpoints() -> QuerySet[Checkpoint]:
    return Checkpoint.objects.select_related("key").defer("entries").order_by("sequence")


def batches() -> QuerySet[Batch]:
    return Batch.objects.select_related("agent").defer("body")


def session_timeline(*, agent_name: str, session_id: str, limit: int = TIMELINE_LIMIT) -> list[dict[str, Any]]:
    """Everything known about one session, in order: verified events (by seq), quarantined
    records, and the OPA decision logs whose input names this agent and session.

    Events come in chain order; quarantined records and OPA decisions are placed by time.
    """
    entries: list[dict[str, Any]] = []
    for event in events().filter(agent__name=agent_name, session_id=session_id).order_by("seq")[:limit]:
        entries.append({
            "source": "event", "status": "verified", "id": event.pk, "time": event.time, "seq": event.seq,
            "kind": event.kind, "record_id": str(event.record_id), "tool": event.tool, "effect": event.effect,
            "rule_ids": event.rule_ids, "payload": event.payload, "masked_paths": event.masked_paths,
        })
    for record in quarantined().filter(agent__name=agent_name, session_id=session_id).order_by("id")[:limit]:
        entries.append({
            "source": "quarantine", "status": "quarantined", "id": record.pk, "time": record.time,
            "seq": record.seq, "kind": (record.raw or {}).get("kind") if isinstance(record.raw, dict) else None,
            "record_id": record.record_id, "reason": record.reason, "message": record.message,
        })
    for log in opa_decisions(agent_name=agent_name, session_id=session_id)[:limit]:
        result = log.result if isinstance(log.result, dict) else {}
        entries.append({
            "source": "opa_decision", "status": "logged", "id": log.pk, "time": log.timestamp, "seq": None,
            "kind": "decision", "decision_id": log.decision_id, "path": log.path,
            "environment": log.environment.name, "effect": result.get("effect", "undefined" if log.result is None else ""),
            "rule_ids": [r.get("rule") for r in result.get("reasons", []) if isinstance(r, dict) and r.get("rule")],
            "input": log.input, "masked": log.masked, "erased": log.erased,
        })
    # Stable: events keep their chain order among equal times.
    return sorted(entries, key=lambda e: (e["time"] or _EPOCH, e["seq"] if e["seq"] is not None else -1))


def opa_decisions(*, agent_name: str, session_id: str | None = None):
    """OPA decision logs of an agent (and session), matched on the decision input Warden sends:
    input.agent.id or input.agent.name, and input.context.session_id."""
    logs = opa_selectors.decision_logs().filter(Q(input__agent__name=agent_name) | Q(input__agent__id=agent_name))
    if session_id is not None:
        logs = logs.filter(input__context__session_id=session_id)
    return logs.order_by("timestamp", "id")


def export_sessions(filtered: QuerySet[AuditEvent]) -> list[tuple[Any, str]]:
    """The (agent, session) pairs with at least one event in `filtered`."""
    return list(filtered.order_by().values_list("agent_id", "session_id").distinct()[:EXPORT_LIMIT])


def export_lines(sessions: list[tuple[Any, str]], *, originals: bool = False) -> Iterator[bytes]:
    """The records of these (agent, session) pairs, whole and in chain order, as canonical JSONL.

    `originals`: exactly as signed (what `warden audit verify` checks offline). Otherwise each
    record's payload is the stored, masked one, so no masked value leaves the store.
    """
    fernet = records.sealer()
    emitted = 0
    for agent_id, session_id in sorted(sessions, key=lambda pair: (str(pair[0]), pair[1])):
        rows = (
            AuditEvent.objects.filter(agent_id=agent_id, session_id=session_id)
            .order_by("seq").values_list("sealed_record", "payload", "masked_paths").iterator(chunk_size=2000)
        )
        for sealed, payload, masked_paths in rows:
            original = records.unseal(sealed, fernet)
            if originals or not masked_paths:
                yield original + b"\n"
            else:
                yield records.canonical_bytes({**parse_jsonl_line(original), "payload": payload}) + b"\n"
            emitted += 1
            if emitted >= EXPORT_LIMIT:
                return


def batch_counts(batch: Batch) -> dict[str, int]:
    reasons: dict[str, int] = {}
    for reason in batch.quarantined.values_list("reason", flat=True):
        reasons[reason] = reasons.get(reason, 0) + 1
    return reasons


def retention_days_by_agent(agent_ids: Iterable) -> dict:
    """Days to keep each agent's events: its own policy, else the longest of its environments', else the default."""
    policies = list(RetentionPolicy.objects.all())
    per_agent = {p.agent_id: p.days for p in policies if p.agent_id}
    per_env = {p.environment: p.days for p in policies if not p.agent_id}
    default = conf.retention_days()
    result = {}
    for agent_id, environments in Agent.objects.filter(pk__in=list(agent_ids)).values_list("pk", "environments"):
        if agent_id in per_agent:
            result[agent_id] = per_agent[agent_id]
            continue
        env_days = [per_env[e] for e in environments or [] if e in per_env]
        result[agent_id] = max(env_days) if env_days else default
    return result
