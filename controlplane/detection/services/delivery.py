"""Delivering alerts: a signed webhook with a Slack-compatible body, and e-mail through
Django's mail settings. Every attempt is written to the delivery log; a failed webhook
raises DeliveryFailed so its Celery task retries with backoff.

Signature (verify before trusting the body): header `X-Warden-Signature: t=<unix time>,
v1=<hex HMAC-SHA256 of "<t>." + body under the shared secret>`. `X-Warden-Delivery` is
the same for every retry of one notification, so a receiver can drop duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
from django.core.mail import send_mail

from controlplane.detection import conf
from controlplane.detection.models import Alert, AlertDelivery, DeliveryChannel

SEVERITY_EMOJI = {"low": ":information_source:", "medium": ":warning:", "high": ":rotating_light:",
                  "critical": ":red_circle:"}


class DeliveryFailed(Exception):
    """The receiver did not accept the notification; the task tries again later."""


def signature_header(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """`t=…,v1=…`: HMAC-SHA256 over the timestamp and the exact body bytes."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, body: bytes, header: str, *, tolerance: int = 300, now: float | None = None) -> bool:
    """What a receiver runs: the MAC matches and the timestamp is fresh (no replays)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    expected = signature_header(secret, body, timestamp=timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def alert_document(alert: Alert) -> dict:
    """The alert as receivers get it (the `warden` part of the webhook body)."""
    return {
        "id": alert.pk, "agent": alert.agent.name, "detector": alert.detector, "subject": alert.subject,
        "severity": alert.severity, "state": alert.state, "summary": alert.summary, "baseline": alert.baseline,
        "observed": alert.observed, "session_ids": alert.session_ids, "record_ids": alert.record_ids,
        "first_seen_at": alert.first_seen_at.isoformat(), "raised_at": alert.raised_at.isoformat(),
        "response": alert.response, "url": f"/api/v1/detection/alerts/{alert.pk}/",
    }


def webhook_body(alert: Alert) -> bytes:
    """Slack-compatible: `text` and `blocks` render in Slack; `warden` carries the data."""
    headline = f"{SEVERITY_EMOJI[alert.severity]} *{alert.severity.upper()}* {alert.get_detector_display()}: {alert.agent.name}"
    sessions = ", ".join(alert.session_ids[:5]) or "none"
    document = {
        "text": f"[{alert.severity}] {alert.summary}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{headline}\n{alert.summary}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"alert {alert.pk} · sessions: {sessions}"}]},
        ],
        "warden": alert_document(alert),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def deliver_webhook(alert_id: int, *, attempt: int, severity: str = "") -> AlertDelivery | None:
    """POST the alert to the configured webhook; raise DeliveryFailed unless it answers 2xx."""
    alert = Alert.objects.select_related("agent").filter(pk=alert_id).first()
    url, secret = conf.webhook_url(), conf.webhook_secret()
    if alert is None or not url:
        return None
    body = webhook_body(alert)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Warden-Detection/1",
        "X-Warden-Delivery": f"alert-{alert.pk}-{severity or alert.severity}",
        "X-Warden-Event": "alert",
    }
    if secret:
        headers["X-Warden-Signature"] = signature_header(secret, body)
    delivery = AlertDelivery(alert=alert, channel=DeliveryChannel.WEBHOOK, destination=url[:500], attempt=attempt)
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=conf.webhook_timeout(), follow_redirects=False)
    except httpx.HTTPError as exc:
        delivery.error = f"{type(exc).__name__}: {exc}"[:500]
        delivery.save()
        raise DeliveryFailed(delivery.error) from exc
    delivery.status_code = response.status_code
    delivery.succeeded = 200 <= response.status_code < 300
    if not delivery.succeeded:
        delivery.error = f"answered {response.status_code}: {response.text[:200]}"[:500]
    delivery.save()
    if not delivery.succeeded:
        raise DeliveryFailed(delivery.error)
    return delivery


def deliver_email(alert_id: int, *, attempt: int) -> AlertDelivery | None:
    """Mail the alert to WARDEN_DETECTION_ALERT_EMAILS through Django's mail settings."""
    alert = Alert.objects.select_related("agent").filter(pk=alert_id).first()
    recipients = list(conf.alert_emails())
    if alert is None or not recipients:
        return None
    subject = f"[Warden {alert.severity}] {alert.get_detector_display()}: {alert.agent.name}"
    lines = [alert.summary, "", f"Alert {alert.pk}, raised {alert.raised_at:%Y-%m-%d %H:%M:%S} UTC.",
             f"Sessions: {', '.join(alert.session_ids[:10]) or 'none'}",
             f"Records: {', '.join(alert.record_ids[:10]) or 'none'}"]
    if alert.response:
        lines.append(f"Automatic response: {alert.response.get('action')} by {alert.response.get('by')}.")
    delivery = AlertDelivery(alert=alert, channel=DeliveryChannel.EMAIL, destination=", ".join(recipients)[:500],
                             attempt=attempt)
    try:
        send_mail(subject[:200], "\n".join(lines), None, recipients)
    except OSError as exc:
        delivery.error = f"{type(exc).__name__}: {exc}"[:500]
        delivery.save()
        raise DeliveryFailed(delivery.error) from exc
    delivery.succeeded = True
    delivery.save()
    return delivery
