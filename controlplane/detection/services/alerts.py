"""Alerts: raising them from findings (merging repeats), their life cycle
open → acknowledged → resolved / false positive, and the false-positive feedback into
the agent's baseline. Every change lands in the change log, attributed to a person or
to the `warden-detector` system user."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from controlplane.changelog.models import ChangeAction
from controlplane.changelog.services import record_change, snapshot
from controlplane.core.exceptions import ConflictError
from controlplane.core.tasks import enqueue
from controlplane.detection import conf
from controlplane.detection.engine import AgentProfile, Finding
from controlplane.detection.services.actors import detector_user
from controlplane.detection.services.response import announce_hold_change, respond_to_alert
from controlplane.detection.models import (
    OPEN_STATES,
    SEVERITY_RANK,
    AgentBaseline,
    Alert,
    AlertState,
)
from controlplane.identity.models import Agent

MAX_EVIDENCE = 50


def _merge(values: list, more: list) -> list:
    return list(dict.fromkeys([*values, *more]))[:MAX_EVIDENCE]


@transaction.atomic
def raise_finding(agent: Agent, finding: Finding, *, stored_at=None, decision_ids=()) -> Alert:
    """Open an alert for `finding`, or merge it into the agent's open alert on the same subject.

    A merge that raises the severity counts as a new alert for response and delivery.
    """
    subject = finding.subject[:300]
    alert = (
        Alert.objects.select_for_update()
        .filter(agent=agent, detector=finding.detector, subject=subject, state__in=OPEN_STATES)
        .first()
    )
    by = detector_user()
    if alert is None:
        alert = Alert.objects.create(
            agent=agent, detector=finding.detector, subject=subject, severity=finding.severity,
            summary=finding.summary, baseline=finding.baseline, observed=finding.observed,
            session_ids=finding.sessions[:MAX_EVIDENCE], record_ids=finding.records[:MAX_EVIDENCE],
            event_ids=finding.events[:MAX_EVIDENCE], decision_ids=list(decision_ids)[:MAX_EVIDENCE],
            first_seen_at=finding.time, last_seen_at=finding.time, stored_at=stored_at,
        )
        record_change(alert, action=ChangeAction.CREATE, by=by, after=snapshot(alert), message=finding.summary)
        escalated = True
    else:
        escalated = SEVERITY_RANK[finding.severity] > SEVERITY_RANK[alert.severity]
        before = snapshot(alert) if escalated else None
        alert.occurrences += 1
        alert.last_seen_at = max(alert.last_seen_at, finding.time)
        alert.session_ids = _merge(alert.session_ids, finding.sessions)
        alert.record_ids = _merge(alert.record_ids, finding.records)
        alert.event_ids = _merge(alert.event_ids, finding.events)
        alert.decision_ids = _merge(alert.decision_ids, list(decision_ids))
        if escalated:
            alert.severity, alert.summary = finding.severity, finding.summary
            alert.baseline, alert.observed = finding.baseline, finding.observed
            alert.stored_at = stored_at or alert.stored_at
        alert.save()
        if escalated:
            record_change(alert, action=ChangeAction.UPDATE, by=by, before=before, after=snapshot(alert),
                          message=f"severity raised to {alert.severity}: {finding.summary}")
    if escalated:
        respond_to_alert(alert)
        _notify(alert)
    return alert


def _notify(alert: Alert) -> None:
    if SEVERITY_RANK[alert.severity] < SEVERITY_RANK.get(conf.min_delivery_severity(), 1):
        return
    if conf.webhook_url():
        enqueue("detection.deliver_webhook", alert.pk, alert.severity)
    if conf.alert_emails():
        enqueue("detection.deliver_email", alert.pk, alert.severity)


def _transition(alert: Alert, *, to: str, allowed_from: tuple[str, ...], by, note: str) -> Alert:
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.state not in allowed_from:
        raise ConflictError(f"the alert is {alert.state}; it cannot become {to}", field="state")
    before = snapshot(alert)
    now = timezone.now()
    alert.state = to
    if to == AlertState.ACKNOWLEDGED:
        alert.acknowledged_at, alert.acknowledged_by = now, by
    else:
        alert.closed_at, alert.closed_by = now, by
        if alert.acknowledged_at is None:
            alert.acknowledged_at, alert.acknowledged_by = now, by
    if note:
        alert.note = note
    alert.save()
    record_change(alert, action=ChangeAction.UPDATE, by=by, before=before, after=snapshot(alert),
                  message=f"{to}: {note}" if note else to)
    if alert.state not in OPEN_STATES and alert.response.get("action") == "require_approval":
        announce_hold_change(alert, "no longer held: the alert is closed")
    return alert


@transaction.atomic
def acknowledge_alert(alert: Alert, *, by, note: str = "") -> Alert:
    """A person has seen the alert and is looking into it."""
    return _transition(alert, to=AlertState.ACKNOWLEDGED, allowed_from=(AlertState.OPEN,), by=by, note=note)


@transaction.atomic
def resolve_alert(alert: Alert, *, by, note: str = "") -> Alert:
    """The alert was real and has been dealt with; the behaviour stays anomalous for the baseline."""
    return _transition(alert, to=AlertState.RESOLVED, allowed_from=OPEN_STATES, by=by, note=note)


@transaction.atomic
def mark_false_positive(alert: Alert, *, by, note: str = "") -> Alert:
    """The behaviour was legitimate: close the alert and teach the agent's baseline that it is normal."""
    alert = _transition(alert, to=AlertState.FALSE_POSITIVE, allowed_from=OPEN_STATES, by=by, note=note)
    baseline = AgentBaseline.objects.select_for_update().filter(agent_id=alert.agent_id).first()
    if baseline is not None:
        profile = AgentProfile(alert.agent.name, baseline.state)
        profile.accept(alert.detector, alert.subject, alert.observed)
        baseline.state = profile.state
        baseline.updated_at = timezone.now()
        baseline.save(update_fields=["state", "updated_at"])
    return alert
