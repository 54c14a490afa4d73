"""What production mode refuses, one message per setting, so an operator fixes them all at once.

The control plane must not start in production with a setting that quietly weakens it: a
debug page that shows broker URLs, a guessable secret key, a Host header it trusts blindly,
a database that cannot take concurrent writers, tasks that run inside requests.
"""

from __future__ import annotations

import binascii
import base64

MIN_SECRET_KEY_LENGTH = 50
MIN_SECRET_KEY_UNIQUE_CHARACTERS = 5  # as Django's own security check (security.W009)


def encryption_key_problem(name: str, key: str) -> str | None:
    """Why `key` is not a Fernet key (32 url-safe base64 bytes), or None when it is."""
    try:
        decoded = base64.urlsafe_b64decode(key.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        decoded = b""
    if len(decoded) != 32:
        return (
            f"{name}: not a Fernet key (32 url-safe base64-encoded bytes); generate one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
        )
    return None


def insecure_settings(
    *, debug: bool, secret_key: str, allowed_hosts: list[str], database_engine: str, eager_tasks: bool,
    encryption_key: str,
) -> list[str]:
    """One message per insecure setting, naming the variable and what to do; empty when none."""
    problems = []
    if debug:
        problems.append("WARDEN_DEBUG: debug pages are refused in production; unset WARDEN_DEBUG")
    if not secret_key:
        problems.append("WARDEN_SECRET_KEY: must be set when WARDEN_PRODUCTION is on (at least 50 random characters)")
    elif len(secret_key) < MIN_SECRET_KEY_LENGTH or len(set(secret_key)) < MIN_SECRET_KEY_UNIQUE_CHARACTERS:
        problems.append(
            f"WARDEN_SECRET_KEY: too short or too repetitive ({len(secret_key)} characters); give at least "
            f"{MIN_SECRET_KEY_LENGTH} random characters, e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(50))'`"
        )
    if not allowed_hosts:
        problems.append("WARDEN_ALLOWED_HOSTS: must list the host names the control plane is served under")
    elif "*" in allowed_hosts or any(host.startswith("*") for host in allowed_hosts):
        problems.append("WARDEN_ALLOWED_HOSTS: '*' trusts any Host header; list the host names instead")
    if database_engine.endswith("sqlite3"):
        problems.append("DATABASE_URL: SQLite is the embedded default only; set a PostgreSQL URL")
    if eager_tasks:
        problems.append(
            "WARDEN_CELERY_EAGER: tasks would run inside web requests; set REDIS_URL and leave WARDEN_CELERY_EAGER "
            "unset, and run workers (`make worker`, `make beat`)"
        )
    if encryption_key:
        problem = encryption_key_problem("WARDEN_ENCRYPTION_KEY", encryption_key)
        if problem:
            problems.append(problem)
    return problems
