"""People's part of compliance evidence: attestations (a control operates), exceptions (a
gap is accepted, approved by someone other than the requester), control owners with their
review cadence, and the preparer / reviewer / approver sign-off of a report.

Attestations and exceptions are one model with a kind: both cover a control in an
environment for a period, both expire, and an expired one stops counting — the next report
turns the control back.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from controlplane.bundles.models import Environment
from controlplane.changelog.models import ChangeAction
from controlplane.changelog.services import record_change, snapshot
from controlplane.compliance.catalog import FRAMEWORK_IDS
from controlplane.compliance.catalog import framework as get_framework
from controlplane.compliance.models import (
    Attestation,
    AttestationKind,
    ControlOwner,
    GapReport,
    ReportSignOff,
    ReportStatus,
    SignOffRole,
)
from controlplane.core.exceptions import ConflictError, InvalidInput

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
# Evidence older than this is stale for any auditor; a longer expiry is refused.
MAX_VALIDITY = timedelta(days=3 * 366)


def clean_text(value, field: str, *, required: bool = True, max_length: int = 10000) -> str:
    """Text PostgreSQL can store and a PDF can print: no NUL, no lone surrogate."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput("must be a string", field=field)
    if "\x00" in value:
        raise InvalidInput("must not contain NUL characters", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("must be valid Unicode text (no lone surrogates)", field=field) from None
    value = value.strip()
    if required and not value:
        raise InvalidInput("is required and cannot be blank", field=field)
    if len(value) > max_length:
        raise InvalidInput(f"must be at most {max_length} characters", field=field)
    return value


def _control(framework: str, control_id: str) -> str:
    if framework not in FRAMEWORK_IDS:
        raise InvalidInput(f"choose one of {', '.join(FRAMEWORK_IDS)}", field="framework")
    control_id = clean_text(control_id, "control_id", max_length=64)
    if get_framework(framework).control(control_id) is None:
        raise InvalidInput(f"{framework} has no control {control_id!r}; see GET /api/v1/compliance/frameworks/"
                           f"{framework}/", field="control_id")
    return control_id


def _active_user(user, field: str):
    if user is None or not getattr(user, "is_active", False):
        raise InvalidInput("must be an active user", field=field)
    return user


@transaction.atomic
def record_attestation(*, kind: str, framework: str, control_id: str, environment: Environment,
                       period_start: datetime, period_end: datetime, statement: str, owner, by,
                       expires_at: datetime, document: bytes | None = None, document_name: str = "",
                       reason: str = "", compensating_measure: str = "") -> Attestation:
    """Record an attestation (counts at once) or an exception (counts once approved)."""
    if kind not in AttestationKind.values:
        raise InvalidInput("choose attestation or exception", field="kind")
    control_id = _control(framework, control_id)
    statement = clean_text(statement, "statement")
    now = timezone.now()
    if period_start >= period_end:
        raise InvalidInput("must be before period_end", field="period_start")
    if expires_at <= now:
        raise InvalidInput("must be in the future: an expired attestation counts for nothing", field="expires_at")
    if expires_at - now > MAX_VALIDITY:
        raise InvalidInput("must be within three years: evidence must be renewed", field="expires_at")
    _active_user(owner, "owner")
    if kind == AttestationKind.EXCEPTION:
        reason = clean_text(reason, "reason", max_length=5000)
        compensating_measure = clean_text(compensating_measure, "compensating_measure", max_length=5000)
    else:
        reason = clean_text(reason, "reason", required=False, max_length=5000)
        compensating_measure = clean_text(compensating_measure, "compensating_measure", required=False,
                                          max_length=5000)
    document_name = clean_text(document_name, "document_name", required=bool(document), max_length=200)
    if document is not None and len(document) > MAX_DOCUMENT_BYTES:
        raise InvalidInput(f"must be at most {MAX_DOCUMENT_BYTES} bytes", field="document")
    attestation = Attestation.objects.create(
        kind=kind, framework=framework, control_id=control_id, environment=environment,
        period_start=period_start, period_end=period_end, statement=statement, owner=owner, created_by=by,
        expires_at=expires_at, document=document or None, document_name=document_name if document else "",
        document_sha256=hashlib.sha256(document).hexdigest() if document else "",
        reason=reason, compensating_measure=compensating_measure,
    )
    record_change(attestation, action=ChangeAction.CREATE, by=by, after=snapshot(attestation),
                  message=f"{kind} for {framework}.{control_id} in {environment.name}")
    return attestation


@transaction.atomic
def approve_exception(attestation: Attestation, *, by) -> Attestation:
    """Approve a risk acceptance; the approver must not be the person who asked for it."""
    attestation = Attestation.objects.select_for_update().get(pk=attestation.pk)
    if attestation.kind != AttestationKind.EXCEPTION:
        raise ConflictError("only an exception needs approval; an attestation counts when recorded", field="kind")
    if attestation.approved_by_id:
        raise ConflictError("this exception is already approved")
    if attestation.revoked_at or attestation.expires_at <= timezone.now():
        raise ConflictError("this exception is revoked or expired; record a new one")
    if by.pk in (attestation.created_by_id, attestation.owner_id):
        raise ConflictError("the approver must be someone other than the requester and the owner", field="approved_by")
    before = snapshot(attestation)
    attestation.approved_by, attestation.approved_at = by, timezone.now()
    attestation.save(update_fields=["approved_by", "approved_at"])
    record_change(attestation, action=ChangeAction.UPDATE, by=by, before=before, after=snapshot(attestation),
                  message="exception approved")
    return attestation


@transaction.atomic
def revoke_attestation(attestation: Attestation, *, by) -> Attestation:
    attestation = Attestation.objects.select_for_update().get(pk=attestation.pk)
    if attestation.revoked_at:
        raise ConflictError("already revoked")
    before = snapshot(attestation)
    attestation.revoked_at = timezone.now()
    attestation.save(update_fields=["revoked_at"])
    record_change(attestation, action=ChangeAction.REVOKE, by=by, before=before, after=snapshot(attestation),
                  message=f"{attestation.kind} revoked")
    return attestation


def for_report(report: GapReport) -> dict[str, list[dict]]:
    """Attestations and exceptions of the report's framework and environment whose period
    overlaps the report's, newest first, by control id."""
    rows = (Attestation.objects.filter(framework=report.framework, environment=report.environment,
                                       period_start__lt=report.period_end, period_end__gt=report.period_start)
            .select_related("owner", "created_by", "approved_by").defer("document").order_by("-created_at"))
    by_control: dict[str, list[dict]] = {}
    for a in rows:
        by_control.setdefault(a.control_id, []).append({
            "id": str(a.pk), "kind": a.kind, "statement": a.statement, "owner": a.owner.get_username(),
            "attested_by": a.created_by.get_username(), "created_at": a.created_at, "expires_at": a.expires_at,
            "revoked_at": a.revoked_at, "approved_by": a.approved_by.get_username() if a.approved_by else None,
            "document_name": a.document_name, "document_sha256": a.document_sha256, "reason": a.reason,
            "compensating_measure": a.compensating_measure,
        })
    return by_control


def expiring(*, within: timedelta, now: datetime | None = None):
    """Attestations and approved exceptions that expire within `within` and are not revoked."""
    now = now or timezone.now()
    return (Attestation.objects.filter(revoked_at__isnull=True, expires_at__gt=now, expires_at__lte=now + within)
            .filter(Q(kind=AttestationKind.ATTESTATION) | Q(approved_by__isnull=False))
            .select_related("owner", "environment").defer("document"))


# -- owners --------------------------------------------------------------------------------


@transaction.atomic
def set_control_owner(*, framework: str, control_id: str, environment: Environment, owner, by,
                      review_every_days: int = 90) -> ControlOwner:
    control_id = _control(framework, control_id)
    _active_user(owner, "owner")
    if not isinstance(review_every_days, int) or not 1 <= review_every_days <= 730:
        raise InvalidInput("must be a whole number of days between 1 and 730", field="review_every_days")
    row, _ = ControlOwner.objects.update_or_create(
        framework=framework, control_id=control_id, environment=environment,
        defaults={"owner": owner, "review_every_days": review_every_days},
    )
    record_change(row, action=ChangeAction.UPDATE, by=by, after=snapshot(row),
                  message=f"owner of {framework}.{control_id} in {environment.name}: {owner.get_username()}")
    return row


def owners_for(framework: str, environment: Environment) -> dict[str, str]:
    return {row.control_id: row.owner.get_username() for row in
            ControlOwner.objects.filter(framework=framework, environment=environment).select_related("owner")}


# -- sign-off --------------------------------------------------------------------------------

SIGN_OFF_ORDER = [SignOffRole.PREPARER, SignOffRole.REVIEWER, SignOffRole.APPROVER]


@transaction.atomic
def sign_off(report: GapReport, *, role: str, by, comment: str = "") -> ReportSignOff:
    """Sign a finished report as preparer, reviewer or approver, in that order, each by a
    different person. The stored PDF is dropped so the next download carries the sign-off
    block (and a fresh signature over it)."""
    report = GapReport.objects.select_for_update().get(pk=report.pk)
    if report.status != ReportStatus.DONE:
        raise ConflictError(f"the report is {report.status}; only a finished report can be signed off")
    if role not in SignOffRole.values:
        raise InvalidInput(f"choose one of {', '.join(SignOffRole.values)}", field="role")
    comment = clean_text(comment, "comment", required=False, max_length=2000)
    existing = {s.role: s for s in report.sign_offs.all()}
    if role in existing:
        raise ConflictError(f"the report already has a {role} sign-off by {existing[role].user.get_username()}",
                            field="role")
    for earlier in SIGN_OFF_ORDER[:SIGN_OFF_ORDER.index(role)]:
        if earlier not in existing:
            raise ConflictError(f"the {earlier} must sign off before the {role}", field="role")
    if any(s.user_id == by.pk for s in existing.values()):
        raise ConflictError("preparer, reviewer and approver must be three different people", field="role")
    signed = ReportSignOff.objects.create(report=report, role=role, user=by, comment=comment)
    GapReport.objects.filter(pk=report.pk).update(pdf=None, pdf_rendered_at=None, pdf_sha256="", pdf_signature={})
    record_change(report, action=ChangeAction.UPDATE, by=by, message=f"report signed off as {role}")
    return signed


def user_named(username, field: str):
    """An active user by username, or a 400 naming the field."""
    if not isinstance(username, str) or not username:
        raise InvalidInput("must be a username", field=field)
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise InvalidInput(f"no active user named {username!r}", field=field)
    return user
