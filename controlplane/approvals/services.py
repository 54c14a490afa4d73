"""The approval workflow: filing, voting, granting, expiring, consuming.

Every state change is one transaction that records itself in the change log (who, when,
comment). After commit: waiting agents are woken (`waiting.publish`), notifications are
queued, and an approved or consumed grant rebuilds that environment's bundle only
(`registry_changed` with `environment=`), so engines see the grant, and then see it gone.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents_sdk.records import canonical_json
from controlplane.accounts.roles import Role, roles_of
from controlplane.approvals import waiting
from controlplane.approvals.grants import issue_grant
from controlplane.approvals.models import (
    ApprovalKind,
    ApprovalRequest,
    ApprovalRule,
    ApprovalState,
    ApprovalVote,
    Verdict,
)
from controlplane.bundles import services as bundle_services
from controlplane.bundles.models import Environment
from controlplane.changelog.models import ChangeAction
from controlplane.changelog.services import record_change, snapshot
from controlplane.core.exceptions import ConflictError, DomainError, InvalidInput
from controlplane.core.signals import registry_changed
from controlplane.core.tasks import enqueue
from controlplane.identity.models import AgentStatus

APPROVER_ROLES = frozenset({Role.ADMIN, Role.APPROVER})
MAX_QUORUM = 10  # as ApprovalRule's check constraint


class NotEligible(DomainError):
    """The person (or agent) may not do this: role, team, four eyes, status. The API answers 403."""


def rule_for(environment: str, category: str) -> ApprovalRule:
    """The most specific rule for (environment, category), or the built-in default."""
    candidates = ApprovalRule.objects.filter(environment__in=[environment, ""], tool_category__in=[category, ""])
    best = sorted(candidates, key=lambda rule: (rule.environment == "", rule.tool_category == ""))
    return best[0] if best else ApprovalRule()


def hash_of_args(args: dict) -> str:
    return hashlib.sha256(canonical_json(args)).hexdigest()


def _new_request(*, min_quorum: int = 1, **fields) -> ApprovalRequest:
    rule = rule_for(fields["environment"], fields.get("tool_category", ""))
    now = timezone.now()
    return ApprovalRequest(
        quorum=min(MAX_QUORUM, max(rule.quorum, min_quorum)), approver_team=rule.approver_team, grant_ttl_seconds=rule.grant_ttl_seconds,
        expires_at=now + timedelta(seconds=rule.request_ttl_seconds), sla_due_at=now + timedelta(seconds=rule.sla_seconds),
        **fields,
    )


def file_request(agent, *, environment: str, tool: str, args: dict, masked_args: dict, args_sha256: str,
                 idempotency_key: str, session_id: str = "", reasons: list | None = None,
                 on_behalf_of: list | None = None, decision_id: str = "") -> tuple[ApprovalRequest, bool]:
    """The open request for this held action, filed now if there is none. Returns (request,
    created). Refuses (nothing stored) a suspended agent, an environment the agent does not
    run in, an unknown tool, and arguments whose hash does not match."""
    from controlplane.policies.models import Tool

    if agent.status != AgentStatus.ACTIVE:
        raise NotEligible(f"agent {agent.name!r} is {agent.status}; it may not request approvals")
    if environment not in agent.environments:
        raise InvalidInput(f"agent {agent.name!r} does not run in {environment!r}", field="environment")
    catalog = Tool.objects.filter(name=tool).first()
    if catalog is None:
        raise InvalidInput(f"{tool!r} is not a tool of the catalog", field="tool")
    if hash_of_args(args) != args_sha256:
        raise InvalidInput("args_sha256 is not the SHA-256 of the canonical JSON of args", field="args_sha256")
    existing = _open_request(agent, idempotency_key)
    if existing is not None:
        return existing, False
    reasons = list(reasons or [])
    controls = sorted({c for r in reasons if isinstance(r, dict) for c in r.get("controls") or [] if isinstance(c, str)})
    # An authored require_approval rule ("wait for two approvers") raises the rule's quorum.
    from controlplane.authoring.selectors import template_quorum

    min_quorum = template_quorum([str(r["rule"]) for r in reasons if isinstance(r, dict) and r.get("rule")])
    request = _new_request(
        min_quorum=min_quorum, kind=ApprovalKind.ACTION, agent=agent, environment=environment, session_id=session_id, tool=tool,
        tool_category=catalog.category, args=args, masked_args=masked_args, args_sha256=args_sha256,
        reasons=reasons, controls=controls, on_behalf_of=list(on_behalf_of or []), decision_id=decision_id,
        idempotency_key=idempotency_key,
    )
    try:
        with transaction.atomic():
            request.save()
            record_change(request, action=str(ChangeAction.CREATE), by=None, after=snapshot(request),
                          message=f"agent {agent.name} asks to run {tool} in {environment}")
            _after_commit(request, "requested")
    except IntegrityError:
        # Filed at the same moment by a retry: that one is the request.
        existing = _open_request(agent, idempotency_key)
        if existing is None:
            raise
        return existing, False
    return request, True


def _open_request(agent, idempotency_key: str) -> ApprovalRequest | None:
    request = (
        ApprovalRequest.objects.filter(agent=agent, idempotency_key=idempotency_key, consumed_at__isnull=True,
                                       state__in=[ApprovalState.PENDING, ApprovalState.APPROVED])
        .first()
    )
    if request is not None and expire_if_due(request):
        request.refresh_from_db()
        return None
    return request


def file_release(environment, *, by, operation: str, source=None, message: str = "") -> ApprovalRequest:
    """A four-eyes release: publishing (or promoting `source` to) `environment` waits for a
    second person's approval through the same workflow."""
    detail = {"operation": operation, "source": source.name if source is not None else "", "message": message}
    key = hashlib.sha256(canonical_json({"release": detail, "environment": environment.name, "by": by.pk,
                                         "at": timezone.now().isoformat()})).hexdigest()
    request = _new_request(
        kind=ApprovalKind.RELEASE, requested_by=by, environment=environment.name, tool=f"bundle.{operation}",
        tool_category="release", release=detail, masked_args=detail, args=detail,
        args_sha256=hash_of_args(detail), idempotency_key=key,
    )
    with transaction.atomic():
        request.save()
        record_change(request, action=str(ChangeAction.CREATE), by=by, after=snapshot(request),
                      message=f"{by.username} asks to {operation} to {environment.name}")
        _after_commit(request, "requested")
    return request


def perform_release(request: ApprovalRequest, *, approver) -> None:
    """Make the release an approved request stands for, as its author, in the approving
    transaction (if the release fails, so does the approval)."""
    detail = request.release
    target = Environment.objects.get(name=request.environment)
    note = f"{detail.get('message') or detail['operation']} (four eyes: approved by {approver.username})"
    if detail["operation"] == "publish":
        bundle_services.publish_policies(target, by=request.requested_by, message=note)
    else:
        source = Environment.objects.get(name=detail["source"])
        bundle_services.promote_bundle(source, to=target, by=request.requested_by, message=note)


def check_eligible(request: ApprovalRequest, user) -> None:
    """Raise NotEligible unless `user` may decide `request`: approver or admin, in the team
    the rule names, and never the agent's owner, its principal or the release's author."""
    if not roles_of(user) & APPROVER_ROLES:
        raise NotEligible("only approvers and admins decide approval requests")
    if request.approver_team and not user.groups.filter(name=request.approver_team).exists():
        raise NotEligible(f"this request needs an approver of team {request.approver_team!r}")
    identities = {value.lower() for value in (user.username, user.email) if value}
    if request.kind == ApprovalKind.RELEASE and request.requested_by_id == user.pk:
        raise NotEligible("four eyes: the author of a release cannot approve it; ask another person")
    if request.agent_id is not None and request.agent.owner_email.lower() in identities:
        raise NotEligible("four eyes: the agent's owner cannot approve its actions")
    acted_for = {str(p).lower() for p in request.on_behalf_of}
    if identities & acted_for:
        raise NotEligible("four eyes: the person the agent acts for cannot approve its actions")


@transaction.atomic
def approve(request: ApprovalRequest, *, by, comment: str = "") -> ApprovalRequest:
    """One approval vote; the request is approved (and its grant issued, or its release
    made) when the quorum of distinct approvers is reached."""
    return _vote(request, by=by, verdict=str(Verdict.APPROVE), comment=comment)


@transaction.atomic
def deny(request: ApprovalRequest, *, by, comment: str = "") -> ApprovalRequest:
    """A denial by one eligible approver ends the request."""
    return _vote(request, by=by, verdict=str(Verdict.DENY), comment=comment)


def _vote(request: ApprovalRequest, *, by, verdict: str, comment: str) -> ApprovalRequest:
    request = ApprovalRequest.objects.select_for_update(of=("self",)).select_related("agent").get(pk=request.pk)
    if _expired_now(request):
        raise ConflictError(f"request {request.pk} expired at {request.expires_at.isoformat()}", field="state")
    if request.state != ApprovalState.PENDING:
        raise ConflictError(f"request {request.pk} is {request.state}, not pending", field="state")
    check_eligible(request, by)
    if request.votes.filter(user=by).exists():
        raise ConflictError(f"{by.username} already decided request {request.pk}; quorum needs distinct approvers")
    ApprovalVote.objects.create(request=request, user=by, verdict=verdict, comment=comment[:2000])
    before = snapshot(request)
    approvals = request.votes.filter(verdict=Verdict.APPROVE).count()
    if verdict == Verdict.DENY:
        _decide(request, str(ApprovalState.DENIED), comment)
    elif approvals >= request.quorum:
        _decide(request, str(ApprovalState.APPROVED), comment)
        if request.kind == ApprovalKind.ACTION:
            issue_grant(request)
    request.save()
    record_change(
        request, action=str(ChangeAction.UPDATE), by=by, before=before, after=snapshot(request),
        message=f"{verdict} ({approvals}/{request.quorum}) by {by.username}: {comment}"[:1000],
    )
    if request.state == ApprovalState.APPROVED and request.kind == ApprovalKind.RELEASE:
        perform_release(request, approver=by)
    if request.state != ApprovalState.PENDING:
        _after_commit(request, request.state)
    return request


def _decide(request: ApprovalRequest, state: str, comment: str) -> None:
    request.state = state
    request.decided_at = timezone.now()
    request.comment = comment[:2000]


@transaction.atomic
def cancel(request: ApprovalRequest, *, by, comment: str = "") -> ApprovalRequest:
    """Withdraw a pending request (its requester, or an admin)."""
    request = ApprovalRequest.objects.select_for_update().get(pk=request.pk)
    if request.state != ApprovalState.PENDING:
        raise ConflictError(f"request {request.pk} is {request.state}, not pending", field="state")
    if request.requested_by_id != getattr(by, "pk", None) and Role.ADMIN not in roles_of(by):
        raise NotEligible("only the requester or an admin cancels a request")
    before = snapshot(request)
    _decide(request, str(ApprovalState.CANCELLED), comment)
    request.save()
    record_change(request, action=str(ChangeAction.UPDATE), by=by, before=before, after=snapshot(request),
                  message=f"cancelled by {by.username}: {comment}"[:1000])
    _after_commit(request, "cancelled")
    return request


def _expired_now(request: ApprovalRequest) -> bool:
    return request.state == ApprovalState.PENDING and request.expires_at <= timezone.now()


def expire_if_due(request: ApprovalRequest) -> bool:
    """Expire a pending request past its deadline; True if this call expired it."""
    with transaction.atomic():
        locked = ApprovalRequest.objects.select_for_update().get(pk=request.pk)
        if not _expired_now(locked):
            return False
        before = snapshot(locked)
        _decide(locked, str(ApprovalState.EXPIRED), "no decision before the request expired")
        locked.save()
        record_change(locked, action=str(ChangeAction.UPDATE), by=None, before=before, after=snapshot(locked),
                      message="expired: no decision in time")
        _after_commit(locked, "expired")
    return True


def expire_due_requests() -> int:
    """Expire every pending request past its deadline (periodic task)."""
    due = ApprovalRequest.objects.filter(state=ApprovalState.PENDING, expires_at__lte=timezone.now())
    return sum(expire_if_due(request) for request in due)


def mark_consumed(grant_id: str, *, agent_id, record_id: str) -> bool:
    """The agent's signed `consumed` record arrived: the grant leaves the next bundle. Only
    the agent the grant binds can consume it. True when this call marked it."""
    with transaction.atomic():
        request = (
            ApprovalRequest.objects.select_for_update()
            .filter(grant_id=grant_id, agent_id=agent_id, state=ApprovalState.APPROVED, consumed_at__isnull=True)
            .first()
        )
        if request is None:
            return False
        before = snapshot(request)
        request.consumed_at = timezone.now()
        request.consumed_record_id = record_id[:64]
        request.save(update_fields=["consumed_at", "consumed_record_id"])
        record_change(request, action=str(ChangeAction.UPDATE), by=None, before=before, after=snapshot(request),
                      message=f"grant {grant_id} consumed (audit record {record_id})")
        _after_commit(request, "consumed")
    return True


def _after_commit(request: ApprovalRequest, event: str) -> None:
    request_id, environment = str(request.pk), request.environment
    transaction.on_commit(lambda: waiting.publish(request_id))
    if request.kind == ApprovalKind.ACTION and event in ("approved", "consumed"):
        # Only this environment's bundle carries the grant: rebuild that one, in this process
        # right after the waiting agent was woken (a Celery hop measured ~270 ms slower).
        reason = f"approval {request_id} {event} in {environment}"
        transaction.on_commit(
            lambda: registry_changed.send(sender=ApprovalRequest, reason=reason, environment=environment)
        )
    enqueue("approvals.notify", request_id, event)


def consume_grants_of_batch(batch_id: int) -> int:
    """Mark consumed the grants whose verified `approval`/`consumed` records are in batch
    `batch_id`; returns how many were marked."""
    from controlplane.audit.models import AuditEvent

    marked = 0
    events = AuditEvent.objects.filter(batch_id=batch_id, kind="approval").values("agent_id", "record_id", "payload")
    for event in events:
        payload = event["payload"] or {}
        grant_id = payload.get("grant_id")
        if payload.get("event") == "consumed" and isinstance(grant_id, str) and grant_id:
            marked += mark_consumed(grant_id, agent_id=event["agent_id"], record_id=str(event["record_id"]))
    return marked
