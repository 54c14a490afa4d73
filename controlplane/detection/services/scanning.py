"""Incremental detection: read what was stored since the watermark, update each agent's
baseline, raise alerts. Runs on a schedule (Celery beat), never on the ingestion path.

Exactly once: one chunk is one transaction that moves the watermark, saves the
baselines and writes the alerts together, so a crash redoes the chunk from scratch and
a second runner waits on a PostgreSQL advisory lock instead of reading the same rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from controlplane.audit.models import AuditEvent
from controlplane.audit.storage import EVENTS_LOCK, advisory_xact_lock
from controlplane.detection import conf
from controlplane.detection.engine import AgentProfile, Observation, observation_of
from controlplane.detection.models import AgentBaseline, DetectionCursor
from controlplane.detection.services.alerts import raise_finding
from controlplane.identity.models import Agent
from controlplane.opa.models import DecisionLog

logger = logging.getLogger(__name__)

AUDIT_STREAM = "audit"
OPA_STREAM = "opa"
RUNNER_LOCK = 0x57415244_44455443  # "WARDDETC": one detection runner at a time
EVENT_COLUMNS = ("id", "agent_id", "kind", "tool", "payload", "time", "session_id", "record_id", "stored_at")


@dataclass
class DetectionRun:
    events: int = 0
    decisions: int = 0
    alerts: list[int] = field(default_factory=list)
    busy: bool = False


def run_detection(*, max_chunks: int = 20) -> DetectionRun:
    """Process audit events and OPA decision logs stored since the last run."""
    run = DetectionRun()
    for _ in range(max_chunks):
        with transaction.atomic():
            if not _runner_lock():
                run.busy = True
                return run
            done = _audit_chunk(run)
        if done:
            break
    for _ in range(max_chunks):
        with transaction.atomic():
            if not _runner_lock():
                run.busy = True
                return run
            done = _decision_log_chunk(run)
        if done:
            break
    return run


def _runner_lock() -> bool:
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [RUNNER_LOCK])
        return cursor.fetchone()[0]


def _cursor(stream: str) -> DetectionCursor:
    cursor, _ = DetectionCursor.objects.get_or_create(stream=stream)
    return DetectionCursor.objects.select_for_update().get(pk=cursor.pk)


def _committed_event_high_water() -> int:
    """The highest event id below which every event is committed: inserts hold EVENTS_LOCK
    shared, so taking it exclusively for an instant waits for any insert in flight."""
    advisory_xact_lock(EVENTS_LOCK)
    return AuditEvent.objects.aggregate(top=Max("id"))["top"] or 0


def _audit_chunk(run: DetectionRun) -> bool:
    """One chunk of audit events; True when the stream is drained."""
    cursor = _cursor(AUDIT_STREAM)
    upto = _committed_event_high_water()
    if upto <= cursor.position:
        return True
    size = conf.chunk_size()
    rows = list(
        AuditEvent.objects.filter(id__gt=cursor.position, id__lte=upto, kind__in=("intent", "decision"))
        .order_by("id").values(*EVENT_COLUMNS)[:size]
    )
    drained = len(rows) < size
    profiles = _Profiles(source=AUDIT_STREAM)
    for row in rows:
        obs = observation_of(
            agent=str(row["agent_id"]), kind=row["kind"], payload=row["payload"], tool=row["tool"], time=row["time"],
            session_id=row["session_id"], record_id=str(row["record_id"]), event_id=row["id"],
        )
        if obs is not None:
            profiles.observe(obs, stored_at=row["stored_at"], run=run)
    profiles.save()
    run.events += len(rows)
    cursor.position = upto if drained else rows[-1]["id"]
    cursor.processed += len(rows)
    cursor.updated_at = timezone.now()
    cursor.save()
    return drained


def _decision_log_chunk(run: DetectionRun) -> bool:
    """One chunk of OPA decision logs, for agents that do not ship signed records."""
    cursor = _cursor(OPA_STREAM)
    settled = timezone.now() - timedelta(seconds=conf.decision_log_lag_seconds())
    size = conf.chunk_size()
    rows = list(
        DecisionLog.objects.filter(id__gt=cursor.position, received_at__lte=settled).order_by("id")
        .values("id", "decision_id", "input", "result", "timestamp", "received_at")[:size]
    )
    if not rows:
        return True
    profiles = _Profiles(source=OPA_STREAM)
    names = {_agent_ref(row["input"]) for row in rows} - {""}
    agents = {a.name: a for a in Agent.objects.filter(name__in=names)}
    for row in rows:
        agent = agents.get(_agent_ref(row["input"]))
        if agent is None:
            continue
        for obs in _decision_log_observations(str(agent.pk), row):
            profiles.observe(obs, stored_at=row["received_at"], run=run, decision_id=row["decision_id"])
    profiles.save()
    run.decisions += len(rows)
    cursor.position = rows[-1]["id"]
    cursor.processed += len(rows)
    cursor.updated_at = timezone.now()
    cursor.save()
    return len(rows) < size


def _agent_ref(data) -> str:
    agent = data.get("agent") if isinstance(data, dict) else None
    ref = agent.get("id") if isinstance(agent, dict) else None
    return ref if isinstance(ref, str) and len(ref) <= 64 else ""


def _decision_log_observations(agent_id: str, row: dict) -> list[Observation]:
    data = row["input"] if isinstance(row["input"], dict) else {}
    action = data.get("action") if isinstance(data.get("action"), dict) else {}
    context = data.get("context") if isinstance(data.get("context"), dict) else {}
    tool = action.get("tool") if isinstance(action.get("tool"), str) else ""
    session = context.get("session_id") if isinstance(context.get("session_id"), str) else ""
    result = row["result"] if isinstance(row["result"], dict) else {}
    # An undefined result is a denial: the SDK fails closed on it.
    effect = result.get("effect") if isinstance(result.get("effect"), str) else "deny"
    common = {"agent": agent_id, "time": row["timestamp"], "session_id": session[:200],
              "record_id": str(row["decision_id"])}
    found = []
    if tool:
        call = observation_of(kind="intent", payload={"tool": tool, "args": action.get("args")}, tool=tool, **common)
        if call is not None:
            found.append(call)
    decision = observation_of(kind="decision", payload={"effect": effect}, tool=tool, **common)
    if decision is not None:
        found.append(decision)
    return found


class _Profiles:
    """The baselines touched by one chunk, loaded once and saved once."""

    def __init__(self, *, source: str):
        self.source = source
        self.rows: dict[str, AgentBaseline] = {}
        self.profiles: dict[str, AgentProfile] = {}
        self.agents: dict[str, Agent] = {}
        self.settings = conf.engine_settings()

    def _profile(self, agent_id: str) -> AgentProfile | None:
        profile = self.profiles.get(agent_id)
        if profile is None and agent_id not in self.rows:
            agent = Agent.objects.get(pk=agent_id)
            row, _ = AgentBaseline.objects.select_for_update().get_or_create(
                agent=agent, defaults={"source": self.source}
            )
            self.rows[agent_id] = row
            self.agents[agent_id] = agent
            if row.source != self.source:
                if self.source == OPA_STREAM:
                    return None  # the agent ships signed records: its decisions are already counted
                row.source, row.state = AUDIT_STREAM, {}  # signed records replace the decision logs
            profile = self.profiles[agent_id] = AgentProfile(agent.name, row.state, self.settings)
        return profile

    def observe(self, obs: Observation, *, stored_at, run: DetectionRun, decision_id: str = "") -> None:
        profile = self._profile(obs.agent)
        if profile is None:
            return
        self.rows[obs.agent].events += 1
        for finding in profile.observe(obs):
            alert = raise_finding(self.agents[obs.agent], finding, stored_at=stored_at,
                                  decision_ids=[decision_id] if decision_id else [])
            run.alerts.append(alert.pk)

    def save(self) -> None:
        now = timezone.now()
        for agent_id, row in self.rows.items():
            profile = self.profiles.get(agent_id)
            if profile is None:
                continue
            row.state = profile.state
            row.updated_at = now
            row.save()
