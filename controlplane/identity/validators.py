"""Input rules of the identity domain, shared by the model and the API."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

from agents_sdk.identity import NAME_PATTERN as AGENT_NAME_PATTERN
from agents_sdk.sandbox.permissions import profile_problem

# verb:resource, e.g. read:tickets, write:db.orders, send:email, read:* ; lowercase.
SCOPE_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}:(\*|[a-z0-9_][a-z0-9_.\-/]{0,95}\*?)$")
ENVIRONMENT_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
MAX_SCOPES = 100
MAX_ENVIRONMENTS = 20


def validate_agent_name(value) -> None:
    # The SDK validates names with the same pattern, so an identity it creates always registers.
    if not isinstance(value, str) or not AGENT_NAME_PATTERN.fullmatch(value):
        raise ValidationError(
            "must be a slug: 1-64 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit"
        )


def validate_scopes(value) -> None:
    if not isinstance(value, list):
        raise ValidationError("must be a list of 'verb:resource' strings")
    if len(value) > MAX_SCOPES:
        raise ValidationError(f"at most {MAX_SCOPES} scopes")
    for scope in value:
        if not isinstance(scope, str) or not SCOPE_PATTERN.match(scope):
            raise ValidationError(
                f"{scope!r} is not a scope: use 'verb:resource' in lowercase, e.g. 'read:tickets' or 'write:db.orders'"
            )
    if len(set(value)) != len(value):
        raise ValidationError("scopes must not repeat")


def validate_environments(value) -> None:
    if not isinstance(value, list):
        raise ValidationError("must be a list of environment names")
    if len(value) > MAX_ENVIRONMENTS:
        raise ValidationError(f"at most {MAX_ENVIRONMENTS} environments")
    for name in value:
        if not isinstance(name, str) or not ENVIRONMENT_PATTERN.match(name):
            raise ValidationError(f"{name!r} is not an environment name: lowercase letters, digits and '-', e.g. 'prod'")
    if len(set(value)) != len(value):
        raise ValidationError("environments must not repeat")


# Host globs as OPA's glob.match reads them with "." as delimiter: "*.example.com", "api.stripe.com".
HOST_GLOB_PATTERN = re.compile(r"^(\*|\*\*|[a-z0-9*]([a-z0-9*\-]{0,62}))(\.(\*|[a-z0-9*]([a-z0-9*\-]{0,62})))*$")
MAX_ALLOWLIST = 200


def validate_host_globs(value) -> None:
    if not isinstance(value, list) or len(value) > MAX_ALLOWLIST:
        raise ValidationError(f"must be a list of at most {MAX_ALLOWLIST} host names or globs")
    for host in value:
        if not isinstance(host, str) or len(host) > 253 or not HOST_GLOB_PATTERN.match(host):
            raise ValidationError(f"{host!r} is not a host name or glob such as '*.example.com'")


def validate_commands(value) -> None:
    if not isinstance(value, list) or len(value) > MAX_ALLOWLIST:
        raise ValidationError(f"must be a list of at most {MAX_ALLOWLIST} commands")
    for command in value:
        if not isinstance(command, str) or not command.strip() or len(command) > 500 or "\n" in command:
            raise ValidationError(f"{command!r} is not a command line: one non-empty line of at most 500 characters")


def validate_sandbox_profile(value) -> None:
    # The SDK builds the sandbox from this object, so the SDK's own rule decides what is valid.
    if value == {}:
        return
    problem = profile_problem(value)
    if problem is not None:
        raise ValidationError(problem)
