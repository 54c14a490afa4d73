"""Exporting the audit log: masked by default, originals only for allowed roles, always recorded.

The stored payloads are masked; the records as signed are kept sealed. An export returns
each record with its payload as stored (masked), unless the caller holds a role listed in
WARDEN_AUDIT_ORIGINALS_ROLES and asks for originals: only those verify offline with
`warden audit verify` wherever a value was masked. Every export is recorded (AuditExport).
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import QuerySet

from controlplane.accounts.roles import roles_of
from controlplane.audit import conf, selectors
from controlplane.audit.models import AuditEvent, AuditExport


def originals_refusal(user) -> str | None:
    """Why `user` may not export original records, or None if a role of theirs is allowed."""
    allowed = set(conf.originals_roles())
    if roles_of(user) & allowed:
        return None
    return (
        "exporting original (unmasked) records needs a role listed in WARDEN_AUDIT_ORIGINALS_ROLES "
        f"(now: {', '.join(sorted(allowed)) or 'none'}); export without ?originals=true for masked records"
    )


def start_export(*, user, filtered: QuerySet[AuditEvent], query: str, originals: bool) -> Iterator[bytes]:
    """Record the export, then return its JSONL lines (the caller checked `originals_refusal`)."""
    sessions = selectors.export_sessions(filtered)
    AuditExport.objects.create(
        user=user if getattr(user, "pk", None) else None, user_name=getattr(user, "username", "") or "system",
        originals=originals, query=query[:2000], sessions=len(sessions),
    )
    return selectors.export_lines(sessions, originals=originals)
