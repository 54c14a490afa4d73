"""Continuous monitoring: after each report, notice the controls that regressed since the
previous report and the attestations and exceptions about to expire, keep the notices on
the report (the console shows them), and deliver them by e-mail (control owners and the
requester) and webhook (WARDEN_COMPLIANCE_WEBHOOK_URL) from a worker."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import httpx
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from controlplane.compliance import attestations
from controlplane.compliance.models import Attestation, ControlOwner, GapReport
from controlplane.core import tasks as core_tasks
from controlplane.settings.registry import setting

logger = logging.getLogger(__name__)
EXPIRY_NOTICE = timedelta(days=30)


def webhook_url() -> str:
    return str(setting("WARDEN_COMPLIANCE_WEBHOOK_URL") or "")


def notices_for(report: GapReport) -> list[dict]:
    notices = [{"kind": "regression", "control_id": r["control_id"], "from": r["from"], "to": r["to"],
                "message": f"{report.framework} {r['control_id']} regressed from {r['from']} to {r['to']} in "
                           f"{report.environment.name}"} for r in (report.diff or {}).get("regressed", [])]
    for item in attestations.expiring(within=EXPIRY_NOTICE).filter(framework=report.framework,
                                                                   environment=report.environment):
        notices.append({"kind": "expiring", "control_id": item.control_id, "attestation": str(item.pk),
                        "expires_at": item.expires_at.isoformat(), "owner": item.owner.get_username(),
                        "message": f"{item.kind} for {report.framework} {item.control_id} in "
                                   f"{report.environment.name} expires on {item.expires_at:%Y-%m-%d}"})
    return notices


def after_report(report: GapReport) -> list[dict]:
    """Record the report's notices on it and queue their delivery."""
    notices = notices_for(report)
    if notices:
        GapReport.objects.filter(pk=report.pk).update(diff={**(report.diff or {}), "notices": notices})
        core_tasks.enqueue("compliance.deliver_notices", str(report.pk))
    return notices


def _recipients(report: GapReport, notices: list[dict]) -> list[str]:
    controls = {n["control_id"] for n in notices}
    owners = ControlOwner.objects.filter(framework=report.framework, environment=report.environment,
                                         control_id__in=controls).select_related("owner")
    emails = {o.owner.email for o in owners} | {n.get("owner_email", "") for n in notices}
    if report.requested_by_id:
        emails.add(report.requested_by.email)
    if not emails - {""}:
        emails |= set(get_user_model().objects.filter(is_active=True, groups__name="admin")
                      .values_list("email", flat=True))
    return sorted(e for e in emails if e)


def _post_webhook(payload: dict):
    url = webhook_url()
    if not url:
        return None
    try:
        response = httpx.post(url, content=json.dumps(payload).encode(), headers={"Content-Type": "application/json"},
                              timeout=10, follow_redirects=False)
        return response.status_code
    except httpx.HTTPError as exc:
        logger.warning("compliance webhook to %s failed: %s", url, exc)
        return f"failed: {type(exc).__name__}"


def sweep_expiring(*, now=None) -> dict:
    """The daily timer (Celery beat): notify each attestation or approved exception once when
    it enters its last EXPIRY_NOTICE, whether or not a report is built in the meantime.

    Items are claimed with SKIP LOCKED and marked in the same transaction, so two sweeps
    running at once never notify the same item twice."""
    now = now or timezone.now()
    notified, emails, webhooks = 0, 0, []
    with transaction.atomic():
        due = list(attestations.expiring(within=EXPIRY_NOTICE, now=now).filter(expiry_noticed_at__isnull=True)
                   .select_for_update(skip_locked=True, of=("self",)).order_by("expires_at"))
        groups: dict[tuple, list] = {}
        for item in due:
            groups.setdefault((item.framework, item.environment), []).append(item)
        for (framework, environment), items in groups.items():
            notices = [{"kind": "expiring", "control_id": a.control_id, "attestation": str(a.pk),
                        "expires_at": a.expires_at.isoformat(), "owner": a.owner.get_username(),
                        "owner_email": a.owner.email,
                        "message": f"{a.kind} for {framework} {a.control_id} in {environment.name} expires on "
                                   f"{a.expires_at:%Y-%m-%d}"} for a in items]
            owners = ControlOwner.objects.filter(framework=framework, environment=environment,
                                                 control_id__in={a.control_id for a in items}).select_related("owner")
            recipients = sorted({n["owner_email"] for n in notices} | {o.owner.email for o in owners} - {""})
            subject = f"[Warden] {len(notices)} compliance evidence item(s) expiring: {framework} / {environment.name}"
            body = "\n".join(n["message"] for n in notices) + "\n\nRenew them at /compliance/attestations\n"
            if recipients:
                emails += send_mail(subject, body, None, recipients)
            status = _post_webhook({"type": "compliance.expiring", "framework": framework,
                                    "environment": environment.name, "notices": notices, "sent_at": now.isoformat()})
            if status is not None:
                webhooks.append(status)
            notified += len(notices)
        Attestation.objects.filter(pk__in=[a.pk for a in due]).update(expiry_noticed_at=now)
    return {"notices": notified, "emails": emails, "webhooks": webhooks}


def deliver(report_id) -> dict:
    """Send a report's notices by e-mail and webhook; returns what was delivered."""
    report = GapReport.objects.select_related("environment", "requested_by").get(pk=report_id)
    notices = (report.diff or {}).get("notices") or []
    outcome = {"emails": 0, "webhook": None}
    if not notices:
        return outcome
    recipients = _recipients(report, notices)
    subject = f"[Warden] {len(notices)} compliance notice(s): {report.framework} / {report.environment.name}"
    body = "\n".join(n["message"] for n in notices) + f"\n\nReport: /api/v1/compliance/reports/{report.pk}/\n"
    if recipients:
        outcome["emails"] = send_mail(subject, body, None, recipients)
    outcome["webhook"] = _post_webhook({"type": "compliance.notices", "report": str(report.pk),
                                        "framework": report.framework, "environment": report.environment.name,
                                        "notices": notices, "sent_at": timezone.now().isoformat()})
    GapReport.objects.filter(pk=report.pk).update(diff={**report.diff, "notices_delivered": outcome})
    return outcome
