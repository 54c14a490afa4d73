"""Telling people: a signed webhook (Slack-compatible body, HMAC-SHA256, retried by Celery,
every attempt in the delivery log) and e-mail to the approvers through Django's mail settings.

    X-Warden-Timestamp: <Unix seconds>
    X-Warden-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the endpoint's secret>

A receiver recomputes the HMAC and refuses timestamps older than a few minutes (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Q
from django.utils import timezone

from controlplane.accounts.roles import Role
from controlplane.approvals.models import ApprovalKind, ApprovalRequest, WebhookDelivery, WebhookEndpoint
from controlplane.core.crypto import secrets_at_rest
from controlplane.core.tasks import enqueue

WEBHOOK_TIMEOUT_SECONDS = 5.0


def summary(request: ApprovalRequest, event: str) -> str:
    subject = f"agent {request.agent.name}" if request.kind == ApprovalKind.ACTION else f"user {request.requested_by}"
    args = json.dumps(request.masked_args, sort_keys=True)[:300]
    return f"Warden approval {event}: {subject} → {request.tool} in {request.environment} {args} (request {request.pk})"


def payload(request: ApprovalRequest, event: str) -> dict:
    """Slack's incoming webhooks read `text` (and `blocks`); the rest is for machines."""
    text = summary(request, event)
    reasons = "; ".join(f"{r.get('rule')}: {r.get('message')}" for r in request.reasons if isinstance(r, dict))
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": reasons or "no policy reasons"}]},
        ],
        "warden": {
            "event": event, "request_id": str(request.pk), "state": request.state, "kind": request.kind,
            "environment": request.environment, "tool": request.tool, "masked_args": request.masked_args,
            "url_path": f"/approvals/{request.pk}",
        },
    }


def signature_headers(secret: bytes, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret, stamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Warden-Timestamp": stamp, "X-Warden-Signature": f"sha256={digest}", "Content-Type": "application/json"}


def notify(request_id: str, event: str) -> int:
    """Queue one delivery per active endpoint, and mail approvers about new requests."""
    request = ApprovalRequest.objects.select_related("agent", "requested_by").filter(pk=request_id).first()
    if request is None:
        return 0
    body = payload(request, event)
    queued = 0
    for endpoint in WebhookEndpoint.objects.filter(is_active=True):
        delivery = WebhookDelivery.objects.create(endpoint=endpoint, request=request, event=event, payload=body)
        enqueue("approvals.deliver_webhook", delivery.pk)
        queued += 1
    if event == "requested":
        approvers = get_user_model().objects.filter(
            Q(groups__name__in=[Role.APPROVER, Role.ADMIN]) | Q(is_superuser=True), is_active=True
        ).exclude(email="").distinct()
        recipients = sorted({user.email for user in approvers})
        if recipients:
            send_mail(f"[Warden] approval needed: {request.tool} in {request.environment}",
                      f"{summary(request, event)}\n\nDecide it in the console: /approvals/{request.pk}\n",
                      None, recipients, fail_silently=True)
    return queued


def deliver(delivery_id: int) -> bool:
    """One attempt; raises on failure so the task retries. Every attempt is logged on the row."""
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None or delivery.delivered_at is not None:
        return True
    body = json.dumps(delivery.payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
    secret = secrets_at_rest().decrypt(bytes(delivery.endpoint.encrypted_secret))
    delivery.attempts += 1
    try:
        answer = httpx.post(delivery.endpoint.url, content=body, headers=signature_headers(secret, body),
                            timeout=WEBHOOK_TIMEOUT_SECONDS)
        delivery.status_code = answer.status_code
        ok = 200 <= answer.status_code < 300
        delivery.last_error = "" if ok else f"HTTP {answer.status_code}: {answer.text[:200]}"
    except httpx.HTTPError as exc:
        ok = False
        delivery.last_error = f"{type(exc).__name__}: {exc}"[:500]
    if ok:
        delivery.delivered_at = timezone.now()
    delivery.save(update_fields=["attempts", "status_code", "last_error", "delivered_at"])
    if not ok:
        raise WebhookFailed(delivery.last_error)
    return True


class WebhookFailed(Exception):
    """A delivery attempt failed; the task retries with backoff."""


def create_endpoint(*, name: str, url: str, secret: str, by) -> WebhookEndpoint:
    from controlplane.changelog.models import ChangeAction
    from controlplane.changelog.services import record_change, snapshot

    endpoint = WebhookEndpoint.objects.create(
        name=name, url=url, encrypted_secret=secrets_at_rest().encrypt(secret.encode("utf-8"))
    )
    record_change(endpoint, action=str(ChangeAction.CREATE), by=by, after=snapshot(endpoint))
    return endpoint
