"""Agents authenticate their uploads with their own Ed25519 key: no shared secret.

    X-Warden-Agent:     billing-bot
    X-Warden-Key-Id:    <hex SHA-256 of the raw public key>
    X-Warden-Timestamp: <Unix seconds>
    X-Warden-Signature: base64 Ed25519 signature of "<timestamp>\\n<hex SHA-256 of the body as sent>"

The body is read here (bounded, before anything else), hashed and kept on the request
for the view. `agents_sdk.shipper.request_headers` builds the same headers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rest_framework import authentication, exceptions, permissions, status

from controlplane.audit import conf
from controlplane.identity.models import AgentKey, AgentStatus

SCHEME = "Warden-Agent-Signature"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "the batch is too large"
    default_code = "too_large"


class AgentPrincipal:
    """The `request.user` of an agent upload: the agent, never a person with roles."""

    is_authenticated = True
    is_active = True
    is_superuser = False
    is_staff = False

    def __init__(self, agent) -> None:
        self.agent = agent
        self.pk = None
        self.username = f"agent:{agent.name}"

    def __str__(self) -> str:
        return self.username


def read_body(request, limit: int) -> bytes:
    """The raw request body, refusing (413) more than `limit` bytes before reading them all."""
    django_request = request._request
    cached = getattr(django_request, "_warden_body", None)
    if cached is not None:
        return cached
    try:
        declared = int(django_request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; a batch may be at most {limit} bytes")
    body = django_request.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"the body exceeds {limit} bytes")
    django_request._warden_body = body
    return body


class AgentSignatureAuthentication(authentication.BaseAuthentication):
    """Authenticates a request signed with an agent's registered, active Ed25519 key."""

    def authenticate(self, request):
        meta = request._request.META
        name = meta.get("HTTP_X_WARDEN_AGENT", "")
        key_id = meta.get("HTTP_X_WARDEN_KEY_ID", "")
        stamp = meta.get("HTTP_X_WARDEN_TIMESTAMP", "")
        signature = meta.get("HTTP_X_WARDEN_SIGNATURE", "")
        missing = [
            header for header, value in (
                ("X-Warden-Agent", name), ("X-Warden-Key-Id", key_id),
                ("X-Warden-Timestamp", stamp), ("X-Warden-Signature", signature),
            ) if not value
        ]
        if missing:
            raise exceptions.NotAuthenticated(
                f"agent uploads are signed with the agent's key; missing header(s): {', '.join(missing)}"
            )
        try:
            moment = int(stamp)
        except ValueError as exc:
            raise exceptions.AuthenticationFailed("X-Warden-Timestamp must be Unix seconds") from exc
        skew = conf.request_max_skew()
        if abs(time.time() - moment) > skew:
            raise exceptions.AuthenticationFailed(
                f"X-Warden-Timestamp is more than {skew} s away from the control plane's clock; check the agent's clock"
            )
        key = AgentKey.objects.select_related("agent").filter(key_id=key_id).first()
        if key is None or key.agent.name != name:
            raise exceptions.AuthenticationFailed(f"key {key_id[:16]}… is not a registered key of agent {name!r}")
        if key.agent.status == AgentStatus.REVOKED:
            raise exceptions.PermissionDenied(f"agent {name!r} is revoked; its uploads are refused")
        if key.revoked_at is not None:
            raise exceptions.AuthenticationFailed(
                f"key {key_id[:16]}… was revoked at {key.revoked_at.isoformat()}; sign uploads with an active key"
            )
        body = read_body(request, conf.max_batch_bytes())
        message = f"{moment}\n{hashlib.sha256(body).hexdigest()}".encode("ascii")
        try:
            Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key)).verify(
                base64.b64decode(signature, validate=True), message
            )
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise exceptions.AuthenticationFailed(
                "X-Warden-Signature does not verify: sign \"<timestamp>\\n<sha256 hex of the body>\" with the key"
            ) from exc
        return AgentPrincipal(key.agent), key

    def authenticate_header(self, request):
        return SCHEME


class IsUsableAgent(permissions.BasePermission):
    """A revoked agent may not upload; a suspended one may (its record of what it did still matters)."""

    message = "the agent is revoked; its uploads are refused"

    def has_permission(self, request, view) -> bool:
        principal = request.user
        return isinstance(principal, AgentPrincipal) and principal.agent.status != AgentStatus.REVOKED
