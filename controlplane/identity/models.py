"""Agents, the identities Warden governs, and their Ed25519 public keys."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from controlplane.identity.validators import (
    validate_agent_name,
    validate_commands,
    validate_environments,
    validate_host_globs,
    validate_sandbox_profile,
    validate_scopes,
)


class AgentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    REVOKED = "revoked", "Revoked"


class RiskTier(models.TextChoices):
    """EU AI Act risk tiers a deployed agent can fall under (unacceptable-risk practices are banned by Art. 5)."""

    MINIMAL = "minimal", "Minimal risk"
    LIMITED = "limited", "Limited risk (transparency obligations, Art. 50)"
    HIGH = "high", "High risk (Chapter III obligations)"


class Agent(models.Model):
    """An AI agent that acts in the world under policy, identified by its keys."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(
        max_length=64, unique=True, validators=[validate_agent_name],
        help_text="Stable identifier used in policies and URLs: lowercase slug.",
    )
    display_name = models.CharField(max_length=200, blank=True)
    owner_email = models.EmailField(help_text="The person accountable for the agent.")
    team = models.CharField(max_length=100, blank=True)
    description = models.TextField(blank=True, max_length=5000)
    scopes = models.JSONField(default=list, blank=True, validators=[validate_scopes])
    risk_tier = models.CharField(max_length=16, choices=RiskTier.choices, default=RiskTier.MINIMAL)
    environments = models.JSONField(default=list, blank=True, validators=[validate_environments])
    egress_allow_hosts = models.JSONField(
        default=list, blank=True, validators=[validate_host_globs],
        help_text="Hosts the agent may reach over the network (globs); everything else is denied.",
    )
    shell_allow_commands = models.JSONField(
        default=list, blank=True, validators=[validate_commands],
        help_text="Shell commands the agent may run; everything else is denied.",
    )
    # With egress_allow_hosts and shell_allow_commands, what agents_sdk.sandbox builds the
    # agent's sandbox from; it travels in the bundle as data.warden_registry.agents[name].sandbox.
    sandbox_profile = models.JSONField(
        default=dict, blank=True, validators=[validate_sandbox_profile],
        help_text=(
            "Sandbox for the agent's code and shell tools: {\"file_read\": [paths], \"file_write\": [paths], "
            "\"limits\": {...}}. Empty: the agent has no sandbox and its sandboxed tools are refused."
        ),
    )
    status = models.CharField(max_length=16, choices=AgentStatus.choices, default=AgentStatus.ACTIVE, db_index=True)
    status_reason = models.CharField(max_length=500, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AgentKey(models.Model):
    """One Ed25519 public key of an agent. Several can be valid at once during rotation.

    Keys are never deleted: the audit pipeline needs the key that was valid when a
    record was signed, so a retired key is revoked with its time instead.
    """

    # The fingerprint: hex SHA-256 of the raw public key, as agents_sdk.keys computes it.
    key_id = models.CharField(max_length=64, primary_key=True)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="keys")
    public_key = models.CharField(max_length=64, help_text="Base64 of the 32 raw Ed25519 public key bytes.")
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "agent key"

    def __str__(self) -> str:
        return f"{self.agent.name}:{self.key_id[:16]}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class AgentChange(models.Model):
    """A write to an agent or to one of its keys, named by the agent, written by PostgreSQL
    triggers (migration 0004) in the writing transaction, with its transaction id.

    The bundle builder reads the agents written since its last read (bundles.registry): a
    suspension at 100,000 agents then reads one agent, where listing every agent's row
    version to find it took most of a second. Kept AGENT_CHANGES_KEPT; a reader whose last
    read is older lists every version again.
    """

    id = models.BigAutoField(primary_key=True)
    agent_name = models.CharField(max_length=64, help_text="'' after a TRUNCATE: every agent may have changed.")
    # pg_current_xact_id() of the writing transaction (an xid8, which a bigint holds).
    xid = models.BigIntegerField(db_index=True)
    created_at = models.DateTimeField(db_index=True)
