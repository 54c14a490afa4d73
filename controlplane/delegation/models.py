"""Who may delegate to whom, the control plane's key for person-issued grants, and revocations.

Delegation grants themselves are signed by agents and travel with their calls; the control
plane stores only what the engines need to verify them (docs/delegation.md).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from controlplane.identity.models import Agent


class DelegationRule(models.Model):
    """What one agent may delegate (to which agents, how deep, for how long) and on whose behalf it may act."""

    agent = models.OneToOneField(Agent, on_delete=models.CASCADE, primary_key=True, related_name="delegation_rule")
    may_delegate_to = models.JSONField(default=list, blank=True, help_text='Agent names, or ["*"] for any agent.')
    max_depth = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Longest chain below this agent.")
    max_lifetime_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="Longest validity of its grants.")
    may_act_for = models.JSONField(
        default=list, blank=True,
        help_text='People whose grants it accepts: e-mail addresses, "@domain", or ["*"]; none by default.',
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["agent__name"]

    def __str__(self) -> str:
        return f"delegation rule of {self.agent.name}"


class DelegationAuthority(models.Model):
    """The control plane's Ed25519 key that signs grants people issue; its public key is in every bundle."""

    key_id = models.CharField(max_length=64, primary_key=True)
    public_key = models.CharField(max_length=64)
    encrypted_private_key = models.BinaryField()
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"delegation authority {self.key_id[:16]}"


class PersonGrant(models.Model):
    """A grant a person issued to an agent through the control plane: the root of a chain."""

    grant_hash = models.CharField(max_length=64, primary_key=True)
    grant = models.JSONField()
    token = models.TextField(help_text="The grant as a one-link chain, ready for context.delegation.")
    audience = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="person_grants")
    session = models.CharField(max_length=200)
    issued_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"grant {self.grant_hash[:16]} to {self.audience.name}"


class Revocation(models.Model):
    """A grant (any issuer's) withdrawn before it expired; shipped in bundles until it would have expired."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    grant_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="When the grant expires anyway (kept until then).")
    reason = models.CharField(max_length=500, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"revocation of {self.grant_hash[:16]}"
