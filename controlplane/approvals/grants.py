"""Signed, bound, single-use grants: issued when a request is approved.

A grant is a compact JWS signed with the bundle signing key (RS256), so every engine that
trusts our bundles can verify it offline (agents_sdk.approvals.grants.read_grant). Its
claims bind it to one action; the policy (rego/warden/approvals.rego) checks the same
binding against the bundle's `approvals` data.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.utils import timezone

from controlplane.approvals.models import ApprovalRequest
from controlplane.bundles.archive import sign_rs256
from controlplane.bundles.signing import active_signing_key, private_key_pem

ISSUER = "warden-control-plane"


def claims_of(request: ApprovalRequest, *, grant_id: str, issued_at, expires_at) -> dict:
    return {
        "iss": ISSUER,
        "jti": grant_id,
        "request_id": str(request.pk),
        "agent": request.agent.name,
        "environment": request.environment,
        "tool": request.tool,
        "args_sha256": request.args_sha256,
        "iat": int(issued_at.timestamp()),
        "exp": int(expires_at.timestamp()),
    }


def issue_grant(request: ApprovalRequest) -> None:
    """Fill in the grant of an approved action request (the caller saves it)."""
    now = timezone.now()
    expires_at = now + timedelta(seconds=request.grant_ttl_seconds)
    grant_id = "grant-" + uuid.uuid4().hex
    key = active_signing_key()
    header = {"alg": "RS256", "kid": key.kid, "typ": "JWT"}
    request.grant_id = grant_id
    request.grant_expires_at = expires_at
    request.grant_token = sign_rs256(
        header, claims_of(request, grant_id=grant_id, issued_at=now, expires_at=expires_at), private_key_pem(key)
    )


def engine_entry(request: ApprovalRequest) -> dict:
    """The grant as bundle data (registry.approvals[grant_id]) for approvals.rego."""
    return {
        "request_id": str(request.pk),
        "agent_id": request.agent.name,
        "environment": request.environment,
        "tool": request.tool,
        "args": request.args,
        "args_sha256": request.args_sha256,
        "expires_at_ns": int(request.grant_expires_at.timestamp()) * 1_000_000_000,
    }
