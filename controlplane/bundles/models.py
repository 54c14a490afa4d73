"""Environments, the signed bundles built for them, and the keys that sign bundles."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models.query_utils import DeferredAttribute
from django.utils import timezone

from controlplane.accounts.models import BearerCredential


def default_policy_settings() -> dict:
    """Organisation facts the policy library reads, per environment (see docs/policies.md)."""
    return {
        "protected_paths": ["/prod/", "/etc/"],
        "destructive_file_tools": ["file_delete"],
        "protected_branches": ["main", "release/*"],
        "internal_email_domains": [],
        "rate_limits": {"calls_per_minute": 120, "calls_per_hour": 2000},
    }


class Environment(models.Model):
    """Where agents run (dev, staging, prod). Each points at one active bundle."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.SlugField(max_length=32, unique=True)
    description = models.CharField(max_length=500, blank=True)
    # Promotion goes from lower to higher position: dev (0) → staging (1) → prod (2).
    position = models.PositiveIntegerField(default=0)
    active_bundle = models.ForeignKey(
        "Bundle", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decision_logging = models.BooleanField(default=True, help_text="Engines upload every decision to Warden.")
    policy_settings = models.JSONField(default=default_policy_settings)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class SigningKey(models.Model):
    """An RSA key that signs bundles (RS256). The private half is stored encrypted."""

    kid = models.CharField(max_length=64, primary_key=True)
    algorithm = models.CharField(max_length=8, default="RS256")
    public_key_pem = models.TextField()
    encrypted_private_key = models.BinaryField()
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    change_log_exclude = ("encrypted_private_key",)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.kid


class ArchiveMember(models.Model):
    """One gzip member of bundle archives, keyed by the SHA-256 of its bytes (docs/opa.md,
    "Bundle layout"). Written once, never updated or deleted: an archive lists its members
    by digest, so a reader holding any archive's list, however old, reads that archive
    whole, and a registry change writes only the members it compressed anew."""

    digest = models.CharField(max_length=64, primary_key=True)  # hex SHA-256 of `data`
    data = models.BinaryField()

    def __str__(self) -> str:
        return self.digest


class _CompleteArchive(DeferredAttribute):
    """Reading `archive` gives the complete tar.gz: the stored bytes of an archive written
    whole (before migration 0005), else its members joined (controlplane.bundles.storage),
    read once per instance and list of members."""

    def __get__(self, instance, cls=None):
        if instance is None:
            return self
        stored = super().__get__(instance, cls)
        members = bytes(instance.members or b"")
        if not members:
            return stored
        cached = instance.__dict__.get("_joined_archive")
        if cached is None or cached[0] != members:
            from controlplane.bundles.storage import read_archive

            cached = instance.__dict__["_joined_archive"] = (members, read_archive(members))
        return cached[1]

    def __set__(self, instance, value) -> None:  # a data descriptor: read through __get__ even once loaded
        instance.__dict__[self.field.attname] = value


class ArchiveField(models.BinaryField):
    """A bundle's archive column: empty when the row lists its members (`members`)."""

    descriptor_class = _CompleteArchive

    def pre_save(self, model_instance, add):
        # What the row stores, never the joined archive the attribute reads: a save must not
        # write back whole the archive its members hold.
        return model_instance.__dict__.get(self.attname, b"")

    def value_from_object(self, obj):
        return obj.__dict__.get(self.attname, b"")


class Bundle(models.Model):
    """An immutable, signed OPA bundle built for one environment.

    The revision is a hash of the bundle's content, so the same policies and data
    always give the same revision, the same bytes and the same ETag.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="bundles")
    revision = models.CharField(max_length=64)
    etag = models.CharField(max_length=70)
    archive = ArchiveField()
    # The archive as the SHA-256 digests (32 bytes each, in order) of its ArchiveMembers.
    members = models.BinaryField(blank=True, default=b"")
    size = models.PositiveIntegerField()
    manifest = models.JSONField()
    files = models.JSONField(help_text="{path: sha256} of every file in the bundle.")
    signing_key = models.ForeignKey(SigningKey, on_delete=models.PROTECT, related_name="bundles")
    tests_passed = models.PositiveIntegerField(default=0)
    built_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    change_log_exclude = ("archive", "members")

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["environment", "revision"], name="unique_bundle_revision")]

    def __str__(self) -> str:
        return f"{self.environment.name}@{self.revision[:12]}"


class BundleActivation(models.Model):
    """Each time an environment's active bundle changed: promotion, rollback, rebuild."""

    id = models.BigAutoField(primary_key=True)
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="activations")
    bundle = models.ForeignKey(Bundle, on_delete=models.PROTECT, related_name="activations")
    previous_bundle = models.ForeignKey(Bundle, null=True, on_delete=models.PROTECT, related_name="+")
    activated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=500, blank=True)
    activated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-activated_at", "-id"]


class EnvironmentToken(BearerCredential):
    """A bearer token with which OPA or a Warden sidecar pulls one environment's bundles
    and uploads decision logs and status."""

    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="tokens")

    def __str__(self) -> str:
        return f"{self.environment.name}:{self.name}"


class BundlePart(models.Model):
    """The environment's bundle split for engines that load two bundles with disjoint roots
    (docs/opa.md, "Bundle layout"): `policy`, the Rego modules (changes with a publish,
    promotion or rollback), and `registry`, data.warden_registry alone (changes with every
    registry change). Each is signed on its own; both belong to one combined `bundle`."""

    class Kind(models.TextChoices):
        POLICY = "policy"
        REGISTRY = "registry"

    id = models.BigAutoField(primary_key=True)
    bundle = models.ForeignKey(Bundle, on_delete=models.CASCADE, related_name="parts")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    revision = models.CharField(max_length=64)
    etag = models.CharField(max_length=70)
    archive = ArchiveField()
    members = models.BinaryField(blank=True, default=b"")  # as Bundle.members
    size = models.PositiveIntegerField()
    manifest = models.JSONField()
    # Registry parts: what changed since the registry part with ETag `previous_etag` (the
    # environment's active one when this was built), so delta bundles need not diff two
    # snapshots: {"agents": {name: facts JSON text or None}, "keys": {key id: entry JSON text
    # or None}, "ops": patch ops for the rest of data.warden_registry (omitted when none),
    # "rest": true when the rest changed in a way ops cannot carry}. Null when the build
    # cannot tell (the first build in a process, or another process built since).
    previous_etag = models.CharField(max_length=70, blank=True)
    changes = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bundle", "kind"], name="unique_bundle_part")]

    def __str__(self) -> str:
        return f"{self.bundle}/{self.kind}"
