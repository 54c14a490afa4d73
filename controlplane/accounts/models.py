"""API tokens for automation; people are Django users with roles as groups."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "wdn_"


def hash_token(plaintext: str) -> str:
    """Tokens are stored as SHA-256: they are long random strings, so no salt or KDF is needed."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def new_token_plaintext() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class BearerCredential(models.Model):
    """A bearer secret of which only the hash is stored; the plaintext is shown once.
    API tokens (people and automation) and environment tokens (OPA, sidecars) are both."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'ci-deployer'.")
    # The first characters of the plaintext, so a person can tell tokens apart.
    prefix = models.CharField(max_length=12, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    change_log_exclude = ("key_hash",)

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class APIToken(BearerCredential):
    """A user's token: it acts with that user's roles."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta(BearerCredential.Meta):
        verbose_name = "API token"

    @property
    def is_usable(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
