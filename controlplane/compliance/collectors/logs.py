"""Evidence from the logs: decisions logged, signed action records received, the stored
log verified against signed checkpoints, and retention against the framework's minimum."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db.models import Count, Max, Min, Sum

from agents_sdk.records import canonical_json
from controlplane.audit import conf as audit_conf
from controlplane.audit.merkle import leaf_hash, merkle_root, unpack_entries
from controlplane.audit.models import AuditEvent, Checkpoint, CheckpointKind, RetentionPolicy
from controlplane.audit.selectors import retention_days_by_agent
from controlplane.compliance.collectors.registry import collector
from controlplane.compliance.evidence import GAP, MET, NOT_TESTED, PARTIAL, Evidence, ObjectRef, ref
from controlplane.opa.models import DecisionLog, OPAInstance
from controlplane.policies.models import PolicyModule, PolicyRevision

# Events older than this without a checkpoint mean the checkpoint job is not running.
CHECKPOINT_LAG = timedelta(hours=1)
# The retention job runs daily; events this far past their retention mean it stopped.
RETENTION_GRACE = timedelta(days=2)


@collector("decision_logging")
def decision_logging(context) -> Evidence:
    """The environment tells its engines to upload decisions, and decisions did arrive."""
    kind = "decision_logging"
    env = context.environment
    logs = DecisionLog.objects.filter(environment=env, timestamp__gte=context.period_start,
                                      timestamp__lt=context.period_end)
    received = logs.aggregate(n=Count("id"), last=Max("timestamp"))
    latest = logs.order_by("-timestamp").only("id", "decision_id", "timestamp").first()
    sdk_decisions = context.event_stats["decisions"]
    engines = OPAInstance.objects.filter(environment=env).count()
    objects = [ref(env, detail=f"decision_logging={'on' if env.decision_logging else 'off'}")]
    if latest is not None:
        objects.append(ref(latest, label=f"decision {latest.decision_id}", detail=f"latest, {latest.timestamp:%Y-%m-%d %H:%M} UTC"))
    figures = {"decision_logging": env.decision_logging, "opa_decisions": received["n"],
               "sdk_decisions": sdk_decisions, "engines": engines}
    if not env.decision_logging:
        return Evidence(
            kind, GAP, f"Decision logging is off for {env.name}: engines are not told to upload their decisions.",
            objects, ["decision logging switched on for the environment"],
            f"Turn decision logging on for {env.name} (PATCH /api/v1/environments/{env.name}/ "
            '{"decision_logging": true}); engines pick it up through discovery.', figures,
        )
    population = f"decisions for {env.name}'s agents in the period"
    silent = [a for a in context.live_agents if a.status == "active" and not context.event_stats["by_agent"].get(a.pk)]
    if not context.agents and not received["n"]:
        return Evidence(kind, NOT_TESTED, f"Decision logging is on, but no agent runs in {env.name}: no decision "
                        "to log.", objects, figures=figures, population=population, population_size=0)
    if not received["n"] and not sdk_decisions:
        return Evidence(
            kind, PARTIAL, f"Decision logging is on for {env.name}, but no decision arrived in the period.",
            objects, ["decisions actually received from the environment's engines or agents"],
            "Check that the environment's OPA instances boot with Warden's discovery bundle and that agents "
            "ship their signed records.", figures,
        )
    figures["active_agents_without_records"] = len(silent)
    total = received["n"] + sdk_decisions
    if silent:
        return Evidence(kind, PARTIAL, f"{total} decision(s) arrived, but {len(silent)} active agent(s) left no "
                        "record in the period: logging is not shown complete.", objects,
                        [f"{a.name} is active and left no decision record in the period" for a in silent[:20]],
                        "Make every active agent ship its signed records, or suspend agents that no longer run.",
                        figures, population=population, population_size=total)
    return Evidence(kind, MET, f"Decision logging is on; {received['n']} OPA decision(s) and {sdk_decisions} "
                    "signed decision record(s) arrived in the period, from every active agent.", objects,
                    figures=figures, population=population, population_size=total)


@collector("signed_audit_log")
def signed_audit_log(context) -> Evidence:
    kind = "signed_audit_log"
    stats = context.event_stats
    quarantined = stats["quarantined"]
    silent = [a for a in context.live_agents if a.status == "active" and not stats["by_agent"].get(a.pk)]
    objects = [ref(a, detail=f"{stats['by_agent'].get(a.pk, 0)} signed event(s)") for a in context.agents
               if stats["by_agent"].get(a.pk)]
    objects += [ObjectRef("audit.quarantinedrecord", reason, f"{n} quarantined: {reason}") for reason, n in
                sorted(quarantined.items())]
    figures = {"events": stats["total"], "quarantined": sum(quarantined.values()), "silent_agents": len(silent)}
    population = f"signed action records of {context.environment.name}'s agents in the period"
    if not context.agents:
        return Evidence(kind, NOT_TESTED, f"No agent runs in {context.environment.name}: no record to sign.",
                        objects, figures=figures, population=population, population_size=0)
    if not stats["total"]:
        return Evidence(kind, GAP, "No signed action record arrived from the environment's agents in the period.",
                        objects, ["signed, hash-chained action records from the agents"],
                        "Ship records from every agent with the SDK's Shipper (docs/audit.md).", figures)
    missing = []
    if quarantined:
        missing.append(f"{sum(quarantined.values())} record(s) failed verification and were quarantined "
                       f"({', '.join(sorted(quarantined))})")
    if silent:
        missing.append(f"active agent(s) with no signed record in the period: {', '.join(a.name for a in silent[:10])}")
    if missing:
        return Evidence(kind, PARTIAL, f"{stats['total']} signed event(s) stored, but the record is incomplete.",
                        objects, missing, "Review /api/v1/audit/quarantine/ and make sure every active agent "
                        "ships its records.", figures)
    return Evidence(kind, MET, f"{stats['total']} signed, chain-verified event(s) from "
                    f"{len(stats['by_agent'])} agent(s) in the period; nothing quarantined.", objects, figures=figures,
                    population=population, population_size=stats["total"])


def _statement_problems(checkpoints: list[Checkpoint]) -> list[str]:
    """Check the chain of checkpoint statements: contiguous sequence, each statement's hash,
    each link to the previous one, and the packed entries against the signed digest. The
    last statement's signature then anchors them all."""
    problems = []
    previous = None
    for checkpoint in checkpoints:
        statement = checkpoint.statement or {}
        body = canonical_json(statement)
        if previous is not None and checkpoint.sequence != previous.sequence + 1:
            problems.append(f"checkpoints {previous.sequence + 1}…{checkpoint.sequence - 1} are missing")
        if hashlib.sha256(body).hexdigest() != checkpoint.statement_hash:
            problems.append(f"checkpoint {checkpoint.sequence}: statement does not match its hash")
        if statement.get("previous") != (previous.statement_hash if previous else None) and previous is not None:
            problems.append(f"checkpoint {checkpoint.sequence} does not chain to checkpoint {previous.sequence}")
        if hashlib.sha256(bytes(checkpoint.entries)).hexdigest() != statement.get("entries_sha256"):
            problems.append(f"checkpoint {checkpoint.sequence}: its entries differ from the signed digest")
        if statement.get("merkle_root") != checkpoint.merkle_root or statement.get("event_count") != checkpoint.event_count:
            problems.append(f"checkpoint {checkpoint.sequence}: columns differ from the signed statement")
        previous = checkpoint
    return problems


def _signature_ok(checkpoint: Checkpoint) -> bool:
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(checkpoint.key.public_key))
        public.verify(base64.b64decode(checkpoint.signature), canonical_json(checkpoint.statement))
    except (InvalidSignature, ValueError):
        return False
    return True


@collector("audit_integrity_verified")
def audit_integrity_verified(context) -> Evidence:
    """The stored log agrees with the signed checkpoint chain.

    Checked here: every statement, link and entries digest of the chain, the last
    checkpoint's signature and its Merkle root, and (in SQL) that the number of stored
    events in the covered range equals what the checkpoints recorded minus what retention
    removed. Not recomputed: each event's content hash, which `manage.py verify_audit` does
    (it reads every event, too slow for a report over millions).
    """
    kind = "audit_integrity_verified"
    checkpoints = list(Checkpoint.objects.select_related("key").order_by("sequence"))
    if not checkpoints:
        has_events = AuditEvent.objects.exists()
        return Evidence(kind, GAP, "No signed checkpoint exists: the stored log cannot be verified.", [],
                        ["signed checkpoints over the audit log"],
                        "Run the Celery beat job audit.checkpoint (every minute) or `manage.py verify_audit` after "
                        "a checkpoint." if has_events else "Ship audit records; checkpoints follow within a minute.")
    problems = _statement_problems(checkpoints)
    last = checkpoints[-1]
    if not _signature_ok(last):
        problems.append(f"checkpoint {last.sequence}: its signature does not verify")
    last_events = next((c for c in reversed(checkpoints) if c.kind == CheckpointKind.EVENTS and c.event_count), None)
    if last_events is not None:
        leaves = [leaf_hash(i, d) for i, _, d in unpack_entries(last_events.entries)]
        if merkle_root(leaves) != last_events.merkle_root:
            problems.append(f"checkpoint {last_events.sequence}: Merkle root does not match its entries")
    sums = {row["kind"]: row["n"] or 0 for row in
            Checkpoint.objects.values("kind").annotate(n=Sum("event_count")).order_by()}
    covered = max((c.last_event_id or 0 for c in checkpoints if c.kind == CheckpointKind.EVENTS), default=0)
    expected = sums.get(CheckpointKind.EVENTS, 0) - sums.get(CheckpointKind.RETENTION, 0)
    stored = AuditEvent.objects.filter(id__lte=covered).count()
    if stored != expected:
        problems.append(f"{stored} event(s) stored in the checkpointed range, the checkpoints account for {expected}")
    lagging = AuditEvent.objects.filter(id__gt=covered, stored_at__lt=context.now - CHECKPOINT_LAG).count()
    in_period = [c for c in checkpoints if context.period_start <= c.created_at < context.period_end]
    objects = [ref(c, label=f"checkpoint {c.sequence} ({c.kind})",
                   detail=f"root {c.merkle_root}, {c.event_count} event(s), {c.created_at:%Y-%m-%d %H:%M} UTC")
               for c in reversed(in_period or [last])]
    figures = {"checkpoints": len(checkpoints), "checkpoints_in_period": len(in_period), "last_sequence": last.sequence,
               "last_root": last.merkle_root, "events_covered": stored, "events_waiting_over_1h": lagging}
    if problems:
        return Evidence(kind, GAP, "The stored log does not agree with the signed checkpoints.", objects, problems,
                        "Run `manage.py verify_audit` to name every changed, removed or inserted event, and treat "
                        "it as a security incident.", figures)
    if lagging:
        return Evidence(kind, PARTIAL, f"The checkpoint chain verifies, but {lagging} event(s) stored over an hour "
                        "ago are not yet covered by a checkpoint.", objects,
                        ["a checkpoint over every event stored more than an hour ago"],
                        "Make sure Celery beat runs audit.checkpoint every minute.", figures)
    return Evidence(kind, MET, f"{len(checkpoints)} checkpoint(s) verify as a signed chain up to checkpoint "
                    f"{last.sequence} (root {last.merkle_root[:16]}…); {stored} covered event(s) all accounted for.",
                    objects, figures=figures)


@collector("log_retention")
def log_retention(context) -> Evidence:
    subject = context.framework.retention.subject
    if subject == "policy_documentation":
        return _policy_documentation_retention(context)
    if subject == "disposal":
        return _disposal(context)
    return _audit_retention(context)


def _retention_objects(context):
    policies = RetentionPolicy.objects.select_related("agent")
    env_policy = policies.filter(environment=context.environment.name, agent__isnull=True).first()
    objects = [ObjectRef("setting", "WARDEN_AUDIT_RETENTION_DAYS", f"default {audit_conf.retention_days()} days")]
    if env_policy:
        objects.append(ref(env_policy, detail=f"{env_policy.days} days for {context.environment.name}"))
    objects += [ref(p, detail=f"{p.days} days for agent {p.agent.name}") for p in
                policies.filter(agent_id__in=context.agent_ids)]
    return objects


def _audit_retention(context) -> Evidence:
    kind = "log_retention"
    minimum = context.framework.retention.min_days
    days = retention_days_by_agent(context.agent_ids)
    default = audit_conf.retention_days()
    env_policy = RetentionPolicy.objects.filter(environment=context.environment.name, agent__isnull=True).first()
    env_days = env_policy.days if env_policy else default
    short = [(a, days.get(a.pk, env_days)) for a in context.agents if days.get(a.pk, env_days) < minimum]
    objects = _retention_objects(context)
    figures = {"minimum_days": minimum, "environment_days": env_days,
               "shortest_days": min([env_days, *days.values()]) if days else env_days}
    # What is actually held, not only what is configured: each agent's oldest stored event
    # should reach back min(minimum, time since the agent was first seen).
    oldest = dict(
        AuditEvent.objects.filter(agent_id__in=context.agent_ids).values("agent_id")
        .annotate(first=Min("time")).order_by().values_list("agent_id", "first")
    )
    thin = []
    for agent in context.agents:
        expected_from = max(context.now - timedelta(days=minimum), agent.created_at)
        first = oldest.get(agent.pk)
        # A gap of a day or more between the agent's start (or the retention horizon) and its
        # oldest stored event means events were removed too early.
        if first is not None and first - expected_from > timedelta(days=1) and agent.created_at < first - timedelta(days=1):
            thin.append((agent, first))
    figures["agents_holding_less_than_required"] = len(thin)
    if not context.agents:
        return Evidence(kind, NOT_TESTED, "No agent runs in the environment: no log to keep.", objects,
                        figures=figures, population="agents' stored events", population_size=0)
    if short or env_days < minimum:
        missing = [f"{a.name} keeps events {d} days" for a, d in short]
        if env_days < minimum:
            missing.insert(0, f"{context.environment.name} keeps events {env_days} days")
        return Evidence(kind, GAP, f"Some logs are kept less than the {minimum} days "
                        f"{context.framework.retention.basis.split(' — ')[0]} requires.", objects, missing,
                        f"Set a retention of at least {minimum} days (POST /api/v1/audit/retention-policies/) "
                        "or raise WARDEN_AUDIT_RETENTION_DAYS.", figures)
    population = f"{context.environment.name}'s agents and their stored events"
    if thin:
        return Evidence(kind, PARTIAL, f"Retention is configured for at least {minimum} days, but {len(thin)} "
                        "agent(s) hold events only from later than they existed.", objects,
                        [f"{a.name}: oldest stored event {first:%Y-%m-%d}, agent registered {a.created_at:%Y-%m-%d}"
                         for a, first in thin],
                        "Check the retention checkpoints for early removals, and whether the agent was idle then.",
                        figures, population=population, population_size=len(context.agents))
    return Evidence(kind, MET, f"Every agent's events are kept at least {figures['shortest_days']} days "
                    f"(minimum {minimum}), and what is stored reaches back that far.", objects, figures=figures,
                    population=population, population_size=len(context.agents))


def _policy_documentation_retention(context) -> Evidence:
    """HIPAA's six years govern documentation of policies and actions. Warden keeps every
    policy revision, bundle and change-log entry without expiry (no delete path exists);
    a revision history with holes would mean rows were removed outside Warden."""
    kind = "log_retention"
    minimum = context.framework.retention.min_days
    histories = PolicyModule.objects.annotate(n=Count("revisions"), top=Max("revisions__number")).order_by("path")
    broken = [m for m in histories if (m.top or 0) != m.n]
    oldest = PolicyRevision.objects.aggregate(first=Min("created_at"))["first"]
    audit_days = min([audit_conf.retention_days(), *retention_days_by_agent(context.agent_ids).values()])
    objects = [ref(m, detail=f"{m.n} revision(s) kept") for m in histories[:25]]
    figures = {"minimum_days": minimum, "policy_modules": len(histories), "oldest_revision":
               oldest.isoformat() if oldest else None, "audit_event_retention_days": audit_days}
    note = (f" Audit events are kept {audit_days} days: the six-year rule covers documentation, not every event; "
            "export events you rely on as documentation of actions.")
    if broken:
        return Evidence(kind, GAP, "Some policy revision histories have holes." + note, objects,
                        [f"{m.path}: {m.n} of {m.top} revisions present" for m in broken],
                        "Restore the missing revisions from a database backup; Warden never deletes them.", figures)
    return Evidence(kind, MET, "Every policy revision, bundle and change-log entry is kept without expiry (no delete "
                    "path exists), beyond the six years required." + note, objects, figures=figures)


def _disposal(context) -> Evidence:
    """Expired audit data is removed by the retention job and each removal is signed."""
    kind = "log_retention"
    days = retention_days_by_agent(context.agent_ids)
    oldest = dict(
        AuditEvent.objects.filter(agent_id__in=context.agent_ids).values("agent_id")
        .annotate(first=Min("stored_at")).order_by().values_list("agent_id", "first")
    )
    overdue = [a for a in context.agents if a.pk in oldest and oldest[a.pk] <
               context.now - timedelta(days=days.get(a.pk, audit_conf.retention_days())) - RETENTION_GRACE]
    removals = Checkpoint.objects.filter(kind=CheckpointKind.RETENTION).order_by("-sequence")
    objects = _retention_objects(context) + [
        ref(c, label=f"retention checkpoint {c.sequence}", detail=f"{c.event_count} event(s) removed, root {c.merkle_root}")
        for c in removals[:10]
    ]
    figures = {"retention_checkpoints": removals.count(), "agents_with_overdue_events": len(overdue)}
    if overdue:
        return Evidence(kind, GAP, "Events past their retention are still stored.", objects,
                        [f"{a.name} has events older than its {days.get(a.pk)} days" for a in overdue],
                        "Make sure Celery beat runs audit.retention daily.", figures)
    return Evidence(kind, MET, "No event is kept past its retention; removals are recorded in signed retention "
                    "checkpoints.", objects, figures=figures)
