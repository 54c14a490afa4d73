"""Incidents: opened from alerts or by hand, a timeline of what was linked and done, SOC 2
triage states, and the regulatory clocks that run from the awareness time.

Clocks (each counted in calendar time from `aware_at`):
- EU AI Act Art. 73: report a serious incident immediately and at the latest 15 days after
  awareness (73(2)); 10 days in the event of a death (73(4)); 2 days for a widespread
  infringement or a serious and irreversible disruption of critical infrastructure (73(3)).
- HIPAA 45 CFR 164.404: a covered entity notifies individuals without unreasonable delay and
  at the latest 60 calendar days after discovery; 164.410: a business associate notifies the
  covered entity at the latest 60 days after discovery.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from controlplane.changelog.models import ChangeAction
from controlplane.changelog.services import record_change, snapshot
from controlplane.core.exceptions import ConflictError, InvalidInput
from controlplane.detection import conf
from controlplane.detection.models import (
    AIActCase,
    Alert,
    ClockRegime,
    HIPAARole,
    Incident,
    IncidentClock,
    IncidentEntry,
    IncidentStatus,
    TimelineKind,
)
from controlplane.identity.models import Agent

AI_ACT_DAYS = {
    AIActCase.GENERAL: (15, "EU AI Act Art. 73(2): at the latest 15 days after awareness of a serious incident"),
    AIActCase.DEATH: (10, "EU AI Act Art. 73(4): at the latest 10 days after awareness, in the event of a death"),
    AIActCase.WIDESPREAD: (2, "EU AI Act Art. 73(3): at the latest 2 days after awareness, for a widespread "
                              "infringement or a serious and irreversible disruption of critical infrastructure"),
}
HIPAA_CLOCKS = {
    HIPAARole.COVERED_ENTITY: (ClockRegime.HIPAA_164_404, 60, "HIPAA 45 CFR 164.404: notify each individual "
                               "without unreasonable delay, at the latest 60 calendar days after discovery"),
    HIPAARole.BUSINESS_ASSOCIATE: (ClockRegime.HIPAA_164_410, 60, "HIPAA 45 CFR 164.410: notify the covered "
                                   "entity without unreasonable delay, at the latest 60 calendar days after discovery"),
}
# The order incidents move in (SOC 2 CC7.3 → CC7.4 → CC7.5); going back is allowed, a closed one reopens to triage.
STATUS_ORDER = list(IncidentStatus.values)
EDITABLE_FIELDS = frozenset({"title", "description", "severity", "owner", "aware_at", "ai_act_case", "hipaa_role"})


def clock_rules(incident: Incident) -> dict[str, tuple[str, datetime]]:
    """{regime: (basis, due time)} for the clocks that apply to the incident as classified."""
    rules = {}
    if incident.ai_act_case in AI_ACT_DAYS:
        days, basis = AI_ACT_DAYS[incident.ai_act_case]
        rules[ClockRegime.AI_ACT_ART73.value] = (basis, incident.aware_at + timedelta(days=days))
    if incident.hipaa_role in HIPAA_CLOCKS:
        regime, days, basis = HIPAA_CLOCKS[incident.hipaa_role]
        rules[regime.value] = (basis, incident.aware_at + timedelta(days=days))
    return rules


def _sync_clocks(incident: Incident) -> None:
    """Make the incident's clocks match its classification; a met clock is kept as history."""
    rules = clock_rules(incident)
    for clock in incident.clocks.all():
        if clock.regime not in rules and clock.met_at is None:
            clock.delete()
    for regime, (basis, due) in rules.items():
        clock, created = IncidentClock.objects.get_or_create(
            incident=incident, regime=regime, defaults={"basis": basis, "starts_at": incident.aware_at, "due_at": due}
        )
        if not created and clock.met_at is None and (clock.due_at != due or clock.basis != basis):
            clock.basis, clock.starts_at, clock.due_at, clock.reminders_sent = basis, incident.aware_at, due, []
            clock.save()


def _entry(incident: Incident, kind: str, by_name: str, message: str, **links) -> IncidentEntry:
    return IncidentEntry.objects.create(incident=incident, kind=kind, by_name=by_name, message=message[:5000], **links)


def _name(by) -> str:
    return getattr(by, "username", None) or "system"


def _check_classification(ai_act_case: str, hipaa_role: str) -> None:
    if ai_act_case not in AIActCase.values:
        raise InvalidInput(f"choose one of {', '.join(AIActCase.values)}", field="ai_act_case")
    if hipaa_role not in HIPAARole.values:
        raise InvalidInput(f"choose one of {', '.join(HIPAARole.values)}", field="hipaa_role")


@transaction.atomic
def open_incident(*, title: str, severity: str, by, aware_at: datetime | None = None, owner=None,
                  description: str = "", ai_act_case: str = AIActCase.NONE, hipaa_role: str = HIPAARole.NONE,
                  alerts: list[Alert] = (), agents: list[Agent] = ()) -> Incident:
    """Open an incident in triage; its clocks start at `aware_at` (default now)."""
    _check_classification(ai_act_case, hipaa_role)
    now = timezone.now()
    aware_at = aware_at or now
    if aware_at > now + timedelta(minutes=5):
        raise InvalidInput("cannot be in the future: it is when the organisation became aware", field="aware_at")
    incident = Incident.objects.create(
        title=title, severity=severity, owner=owner, aware_at=aware_at, description=description,
        ai_act_case=ai_act_case, hipaa_role=hipaa_role, opened_by_name=_name(by),
    )
    _entry(incident, TimelineKind.OPENED, _name(by), f"opened ({severity}): {title}")
    _sync_clocks(incident)
    for clock in incident.clocks.all():
        _entry(incident, TimelineKind.CLOCK, _name(by), f"{clock.get_regime_display()} due {clock.due_at:%Y-%m-%d %H:%M} UTC")
    for agent in agents:
        incident.agents.add(agent)
    for alert in alerts:
        _link_alert(incident, alert, by)
    record_change(incident, action=ChangeAction.CREATE, by=by, after=snapshot(incident), message=title)
    return incident


def _link_alert(incident: Incident, alert: Alert, by) -> None:
    if incident.alerts.filter(pk=alert.pk).exists():
        raise ConflictError(f"alert {alert.pk} is already linked to this incident", field="alert")
    incident.alerts.add(alert)
    incident.agents.add(alert.agent)
    _entry(incident, TimelineKind.ALERT, _name(by), f"alert {alert.pk} ({alert.severity}): {alert.summary}",
           alert=alert, agent=alert.agent)
    for session_id in alert.session_ids[:20]:
        _entry(incident, TimelineKind.SESSION, _name(by), f"session {session_id} of {alert.agent.name} (from alert "
               f"{alert.pk})", agent=alert.agent, session_id=session_id)


@transaction.atomic
def open_incident_from_alert(alert: Alert, *, by, ai_act_case: str | None = None, hipaa_role: str = HIPAARole.NONE,
                             owner=None) -> Incident:
    """An incident for the alert, unless an open incident already holds it (then that one).

    Awareness is the moment the alert was raised. A high-risk agent's incident starts with the
    Art. 73 general clock, the conservative default a person narrows or removes in triage.
    """
    existing = alert.incidents.exclude(status=IncidentStatus.CLOSED).first()
    if existing is not None:
        return existing
    if ai_act_case is None:
        ai_act_case = AIActCase.GENERAL if alert.agent.risk_tier == "high" else AIActCase.NONE
    return open_incident(
        title=f"{alert.get_detector_display()}: {alert.agent.name}"[:200], severity=alert.severity, by=by,
        aware_at=alert.raised_at, owner=owner, description=alert.summary, ai_act_case=ai_act_case,
        hipaa_role=hipaa_role, alerts=[alert],
    )


@transaction.atomic
def update_incident(incident: Incident, *, by, **fields) -> Incident:
    """Change the description, owner, severity, awareness time or classification; clocks follow."""
    unknown = set(fields) - EDITABLE_FIELDS
    if unknown:
        raise InvalidInput("cannot be changed here", field=sorted(unknown)[0])
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    before = snapshot(incident)
    for name, value in fields.items():
        setattr(incident, name, value)
    _check_classification(incident.ai_act_case, incident.hipaa_role)
    incident.save()
    _sync_clocks(incident)
    changed = sorted(k for k, v in snapshot(incident).items() if before.get(k) != v)
    if changed:
        _entry(incident, TimelineKind.NOTE, _name(by), "changed " + ", ".join(changed))
    record_change(incident, action=ChangeAction.UPDATE, by=by, before=before, after=snapshot(incident))
    return incident


@transaction.atomic
def set_incident_status(incident: Incident, *, status: str, by, note: str = "") -> Incident:
    """Move the incident through triage (CC7.3), response (CC7.4), recovery (CC7.5), closure."""
    if status not in STATUS_ORDER:
        raise InvalidInput(f"choose one of {', '.join(STATUS_ORDER)}", field="status")
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    if incident.status == status:
        raise ConflictError(f"the incident is already in {status}", field="status")
    before = snapshot(incident)
    incident.status = status
    incident.closed_at = timezone.now() if status == IncidentStatus.CLOSED else None
    incident.save()
    _entry(incident, TimelineKind.STATUS, _name(by), f"{before['status']} → {status}" + (f": {note}" if note else ""))
    record_change(incident, action=ChangeAction.UPDATE, by=by, before=before, after=snapshot(incident), message=note)
    return incident


@transaction.atomic
def link_alert(incident: Incident, alert: Alert, *, by) -> Incident:
    _link_alert(incident, alert, by)
    record_change(incident, action=ChangeAction.UPDATE, by=by, message=f"linked alert {alert.pk}")
    return incident


@transaction.atomic
def link_session(incident: Incident, *, agent: Agent, session_id: str, by) -> IncidentEntry:
    """Add one of an agent's sessions to the timeline (its records are the evidence)."""
    if incident.timeline.filter(kind=TimelineKind.SESSION, agent=agent, session_id=session_id).exists():
        raise ConflictError("this session is already on the timeline", field="session_id")
    incident.agents.add(agent)
    entry = _entry(incident, TimelineKind.SESSION, _name(by), f"session {session_id} of {agent.name}", agent=agent,
                   session_id=session_id)
    record_change(incident, action=ChangeAction.UPDATE, by=by, message=f"linked session {session_id} of {agent.name}")
    return entry


@transaction.atomic
def record_action(incident: Incident, *, text: str, by) -> IncidentEntry:
    """Write down an action taken (containment, notification, remediation) on the timeline."""
    entry = _entry(incident, TimelineKind.ACTION, _name(by), text)
    record_change(incident, action=ChangeAction.UPDATE, by=by, message=f"action: {text[:200]}")
    return entry


@transaction.atomic
def mark_clock_met(incident: Incident, *, regime: str, by, at: datetime | None = None, note: str = "") -> IncidentClock:
    """The report or notice a clock asks for went out at `at` (default now)."""
    clock = IncidentClock.objects.select_for_update().filter(incident=incident, regime=regime).first()
    if clock is None:
        raise InvalidInput(f"this incident has no {regime!r} clock", field="regime")
    if clock.met_at is not None:
        raise ConflictError(f"the {regime} clock was already met at {clock.met_at:%Y-%m-%d %H:%M}", field="regime")
    at = at or timezone.now()
    if at < clock.starts_at:
        raise InvalidInput("cannot be before the awareness time", field="at")
    clock.met_at, clock.met_by_name = at, _name(by)
    clock.save(update_fields=["met_at", "met_by_name"])
    late = " (late)" if at > clock.due_at else ""
    _entry(incident, TimelineKind.CLOCK, _name(by), f"{clock.get_regime_display()} met{late}" + (f": {note}" if note else ""))
    record_change(incident, action=ChangeAction.UPDATE, by=by, message=f"clock {regime} met{late}")
    return clock


def send_clock_reminders(*, now: datetime | None = None) -> list[int]:
    """E-mail the owner (or the alert recipients) when a clock nears its end or has run out.

    Each lead time (72 h, 24 h, 4 h by default; 0 = overdue) is reminded once per clock; a
    clock that starts inside several lead times gets one reminder, for the nearest.
    """
    now = now or timezone.now()
    leads = sorted(set(conf.reminder_lead_hours()) | {0}, reverse=True)
    sent = []
    clocks = (IncidentClock.objects.filter(met_at__isnull=True).exclude(incident__status=IncidentStatus.CLOSED)
              .select_related("incident", "incident__owner").order_by("due_at"))
    for clock in clocks:
        with transaction.atomic():
            clock = IncidentClock.objects.select_for_update(of=("self",)).select_related("incident", "incident__owner").get(pk=clock.pk)
            crossed = [h for h in leads if clock.due_at - timedelta(hours=h) <= now and h not in clock.reminders_sent]
            if not crossed:
                continue
            nearest = min(crossed)
            left = clock.due_at - now
            when = (f"ran out {_duration(-left)} ago" if left.total_seconds() <= 0
                    else f"runs out in {_duration(left)}")
            incident = clock.incident
            message = (f"Incident {incident.pk} ({incident.title}): the {clock.get_regime_display()} clock {when}, "
                       f"at {clock.due_at:%Y-%m-%d %H:%M} UTC. {clock.basis}.")
            recipients = [incident.owner.email] if incident.owner and incident.owner.email else list(conf.alert_emails())
            if recipients:
                send_mail(f"[Warden] deadline: incident {incident.pk}, {clock.regime}", message, None, recipients)
            clock.reminders_sent = sorted(set(clock.reminders_sent) | set(crossed), reverse=True)
            clock.save(update_fields=["reminders_sent"])
            _entry(incident, TimelineKind.CLOCK, "warden-detector", f"reminder ({nearest} h lead): {message}")
            sent.append(clock.pk)
    return sent


def _duration(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"
