"""Organisation policies (Rego modules with revision history) and the tool catalog."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from agents_sdk.engine.args_schema import schema_problems
from controlplane.identity.validators import validate_sandbox_profile

# Organisation modules live under org/ in bundles; warden/ is the shipped library's.
MODULE_PATH_PATTERN = r"^[a-z0-9][a-z0-9_\-]*(/[a-z0-9][a-z0-9_\-]*)*\.rego$"
TOOL_NAME_PATTERN = r"^[a-z][a-z0-9_.\-]{0,99}$"


class PolicyModule(models.Model):
    """One organisation Rego file. Its text lives in revisions; the newest is current."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    path = models.CharField(
        max_length=200, unique=True, validators=[RegexValidator(MODULE_PATH_PATTERN)],
        help_text="File name inside the org/ folder of the bundle, e.g. 'finance/refunds.rego'.",
    )
    package = models.CharField(max_length=200, editable=False)
    current_revision = models.ForeignKey(
        "PolicyRevision", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    is_deleted = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["path"]

    def __str__(self) -> str:
        return self.path

    @property
    def bundle_path(self) -> str:
        return f"org/{self.path}"

    @property
    def is_test(self) -> bool:
        return self.path.endswith("_test.rego")


class PolicyRevision(models.Model):
    """An immutable version of a module's text, with who wrote it, when and why."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    module = models.ForeignKey(PolicyModule, on_delete=models.PROTECT, related_name="revisions")
    number = models.PositiveIntegerField()
    source = models.TextField()
    sha256 = models.CharField(max_length=64)
    message = models.CharField(max_length=500, blank=True)
    diff = models.TextField(blank=True, help_text="Unified diff from the previous revision.")
    relaxations = models.JSONField(
        default=list, blank=True,
        help_text="Replayed inputs whose decision this revision made less strict (deny to hold or allow, hold to allow).",
    )
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    change_log_exclude = ("source", "diff", "relaxations")

    class Meta:
        ordering = ["module", "-number"]
        constraints = [models.UniqueConstraint(fields=["module", "number"], name="unique_revision_number")]

    def __str__(self) -> str:
        return f"{self.module.path}@{self.number}"


def validate_args_schema(value) -> None:
    """A tool's argument schema must be one the pack can enforce (agents_sdk.engine.args_schema)."""
    problems = schema_problems(value) if value is not None else []
    if problems:
        raise ValidationError(problems)


class ToolCategory(models.TextChoices):
    FILE = "file", "Files"
    NETWORK = "network", "Network egress"
    SHELL = "shell", "Shell commands"
    PAYMENT = "payment", "Payments"
    EMAIL = "email", "E-mail"
    GIT_PUSH = "git_push", "Git pushes"
    DATABASE = "database", "Databases"
    OTHER = "other", "Other"


class Tool(models.Model):
    """A tool agents may call, the scopes it needs and how risky it is.

    The catalog travels in bundle data: an unknown tool is denied by policy.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True, validators=[RegexValidator(TOOL_NAME_PATTERN)])
    description = models.CharField(max_length=500, blank=True)
    scopes = models.JSONField(default=list, blank=True)
    category = models.CharField(max_length=16, choices=ToolCategory.choices, default=ToolCategory.OTHER)
    irreversible = models.BooleanField(default=False, help_text="Calls need human approval.")
    calls_per_minute = models.PositiveIntegerField(null=True, blank=True)
    calls_per_hour = models.PositiveIntegerField(null=True, blank=True)
    # Travels as tools[name].sandbox: the policy denies the tool to any call not run by
    # agents_sdk.sandbox, which builds the sandbox from this profile or the agent's own.
    sandbox_required = models.BooleanField(
        default=False, help_text="Calls run only in the sandbox; any other call is denied."
    )
    sandbox_profile = models.JSONField(
        default=dict, blank=True, validators=[validate_sandbox_profile],
        help_text=(
            "The tool's own sandbox files and limits ({\"file_read\": [...], \"file_write\": [...], \"limits\": {...}}); "
            "empty: the calling agent's registry profile."
        ),
    )
    # Travels as tools[name].args_schema: the pack, the Guard and the sidecar deny arguments
    # that break it (malformed-args); only the subset the pack enforces is accepted.
    args_schema = models.JSONField(
        null=True, blank=True, validators=[validate_args_schema],
        help_text="JSON Schema of the tool's arguments, in the subset the policy pack enforces (docs/rego-engine.md).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
