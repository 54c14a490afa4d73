"""Every environment variable the control plane reads, declared once: name, type, default and
what it does.

`settings/base.py` reads them through `read()`, `.env.example` and the table in
docs/configuration.md list exactly these (tests/core/test_configuration_registry.py checks
it), and `check_production()` refuses insecure values when WARDEN_PRODUCTION is on, with one
message per variable. After OPAL's `confi.int("NAME", default, description=...)`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class Variable:
    name: str
    kind: type  # str, int, float, bool or tuple (comma-separated)
    default: Any  # None: computed in settings/base.py, described in `default_text`
    description: str
    default_text: str = ""

    def parse(self, raw: str) -> Any:
        if self.kind is bool:
            word = raw.strip().lower()
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
            raise ImproperlyConfigured(f"{self.name}: {raw!r} is not a yes/no value; use 1 or 0")
        if self.kind is int:
            try:
                value = int(raw.strip())
            except ValueError:
                raise ImproperlyConfigured(f"{self.name}: {raw!r} is not a whole number") from None
            if value < 0:
                raise ImproperlyConfigured(f"{self.name}: {value} is negative; give 0 or more")
            return value
        if self.kind is float:
            try:
                number = float(raw.strip())
            except ValueError:
                raise ImproperlyConfigured(f"{self.name}: {raw!r} is not a number") from None
            if not math.isfinite(number) or number < 0:
                raise ImproperlyConfigured(f"{self.name}: {raw!r} is not a finite number of 0 or more")
            return number
        if self.kind is tuple:
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        return raw


DEFAULT_SENSITIVE_KEYS = (
    "password", "passwd", "secret", "token", "api_key", "apikey", "access_token", "refresh_token",
    "authorization", "cookie", "card_number", "cvv", "ssn", "private_key",
)

VARIABLES: tuple[Variable, ...] = (
    # -- where state lives --
    Variable("DATABASE_URL", str, "", "PostgreSQL URL (psycopg 3); unset: SQLite under WARDEN_VAR_DIR, in WAL mode",
             "SQLite at $WARDEN_VAR_DIR/warden.sqlite3"),
    Variable("REDIS_URL", str, "", "Redis as Celery broker, result backend, cache and long-poll fan-out; unset: "
             "tasks run in-process and periodic jobs run in a scheduler thread", "unset"),
    Variable("WARDEN_VAR_DIR", str, None, "where generated state lives (SQLite file, secret key, demo tokens, "
             "collected static files)", "./var"),
    Variable("WARDEN_DB_CONN_MAX_AGE", int, 0, "seconds a database connection is kept between requests; 0 closes "
             "it after each request (each ASGI request runs in its own thread)"),
    Variable("WARDEN_TEST_DATABASE", str, "", "name of the test database pytest creates on PostgreSQL",
             "test_<database name>"),
    Variable("WARDEN_DB_OWNER_PASSWORD", str, "", "password `manage.py setup_db_roles` gives the owner role "
             "(migrations); unset: the role gets none; never logged"),
    Variable("WARDEN_DB_APP_PASSWORD", str, "", "password `manage.py setup_db_roles` gives the app role (web "
             "and workers); unset: the role gets none; never logged"),
    Variable("WARDEN_DB_RETENTION_PASSWORD", str, "", "password `manage.py setup_db_roles` gives the retention "
             "role (the retention worker); unset: the role gets none; never logged"),
    # -- security --
    Variable("WARDEN_PRODUCTION", bool, False, "production mode: refuses insecure settings at start, one message "
             "per setting; turns on HSTS, the HTTPS redirect and secure cookies"),
    Variable("WARDEN_DEBUG", bool, False, "Django's debug pages; only ever on when asked for, and refused in "
             "production"),
    Variable("WARDEN_SECRET_KEY", str, "", "Django's secret key (at least 50 characters in production); never "
             "logged", "generated once into $WARDEN_VAR_DIR/secret_key (not in production)"),
    Variable("WARDEN_SECRET_KEY_FALLBACKS", tuple, (), "earlier secret keys, comma-separated: sessions and secrets "
             "at rest encrypted under them stay readable after a rotation"),
    Variable("WARDEN_ENCRYPTION_KEY", str, "", "Fernet key for secrets at rest: bundle and checkpoint signing keys "
             "and sealed audit records; run `manage.py rotate_encryption_key` after changing it",
             "derived from WARDEN_SECRET_KEY"),
    Variable("WARDEN_ENCRYPTION_KEY_FALLBACKS", tuple, (), "earlier Fernet keys, comma-separated, still accepted "
             "for decryption (keep them while sealed audit records made under them are retained)"),
    Variable("WARDEN_ALLOWED_HOSTS", tuple, None, "host names the control plane answers to, comma-separated; "
             "`*` is refused in production", "127.0.0.1,localhost,testserver,[::1] (none in production)"),
    Variable("WARDEN_CSRF_TRUSTED_ORIGINS", tuple, (), "origins allowed to post forms, e.g. "
             "https://warden.example.com"),
    Variable("WARDEN_SESSION_SECONDS", int, 8 * 3600, "a console session ends after this many seconds without a "
             "request"),
    Variable("WARDEN_HSTS_SECONDS", int, 31_536_000, "Strict-Transport-Security max-age sent in production"),
    Variable("WARDEN_BEHIND_TLS_PROXY", bool, False, "trust X-Forwarded-Proto: https from the proxy that "
             "terminates TLS (needed for the production HTTPS redirect behind a proxy)"),
    # -- requests --
    Variable("WARDEN_MAX_REQUEST_BYTES", int, 2 * 1024 * 1024, "largest request body accepted, in bytes"),
    Variable("WARDEN_MAX_JSON_DEPTH", int, 32, "deepest nesting of arrays and objects accepted in a JSON body"),
    Variable("WARDEN_LOG_LEVEL", str, "INFO", "log level of the control plane"),
    # -- tasks --
    Variable("WARDEN_CELERY_EAGER", bool, None, "run Celery tasks in the calling process; refused in production",
             "on without REDIS_URL, off with it"),
    Variable("WARDEN_CELERY_VISIBILITY_TIMEOUT", int, 600, "seconds before Redis redelivers the task of a dead "
             "worker"),
    Variable("WARDEN_BROKER_TIMEOUT", int, 2, "seconds a request waits for the broker when it queues a task; the "
             "periodic requeue and reconcile jobs pick up what could not be sent"),
    Variable("WARDEN_IN_PROCESS_JOBS", bool, None, "run the periodic jobs (bundle reconcile, audit checkpoints, "
             "retention, stale requeues) in a scheduler thread of the web process",
             "on when tasks run eagerly (no REDIS_URL), off otherwise (run `make beat`)"),
    # -- bundles (docs/opa.md) --
    Variable("WARDEN_OPA_SPLIT_BUNDLES", bool, False, "discovery configures OPA with two bundles per "
             "environment, policy and registry, so a registry change downloads only the registry"),
    Variable("WARDEN_OPA_UPLOAD_QUEUE_MAX_ITEMS", int, 100_000, "status reports and decision-log uploads "
             "waiting in Redis for a worker at most; past it engines get 429 with Retry-After and send again"),
    Variable("WARDEN_OPA_UPLOAD_QUEUE_MAX_BYTES", int, 256 * 1024 * 1024, "bytes of queued uploads at most (the "
             "Redis memory they may take); past it engines get 429 with Retry-After"),
    # -- audit --
    Variable("WARDEN_AUDIT_MAX_BATCH_RECORDS", int, 10_000, "records per uploaded audit batch"),
    Variable("WARDEN_AUDIT_MAX_BATCH_BYTES", int, 16 * 1024 * 1024, "size of an audit batch body, compressed and "
             "inflated"),
    Variable("WARDEN_AUDIT_MAX_CLOCK_SKEW", int, 300, "seconds an agent's signed request time may differ from the "
             "control plane's clock"),
    Variable("WARDEN_AUDIT_SENSITIVE_KEYS", tuple, DEFAULT_SENSITIVE_KEYS, "object keys whose values are masked "
             "before storage, comma-separated, case-insensitive", "password,secret,token,api_key,... (14 keys)"),
    Variable("WARDEN_AUDIT_RETENTION_DAYS", int, 190, "default retention of audit events (the EU AI Act asks for "
             "at least six months)"),
    Variable("WARDEN_AUDIT_MIN_RETENTION_DAYS", int, 190, "no retention policy may go below this"),
    Variable("WARDEN_AUDIT_QUEUE", str, "celery", "Celery queue of audit verification tasks"),
    Variable("WARDEN_AUDIT_RETENTION_QUEUE", str, "celery", "Celery queue of the daily retention job: give it "
             "a worker that connects as the retention role (docs/audit.md, \"Database roles\")"),
    Variable("WARDEN_AUDIT_CHECKPOINT_MAX_EVENTS", int, 100_000, "events per Merkle checkpoint at most"),
    Variable("WARDEN_AUDIT_STALE_BATCH_SECONDS", int, 300, "a batch unverified this long is queued again"),
    Variable("WARDEN_AUDIT_MAX_BATCH_ATTEMPTS", int, 5, "verification runs a batch may start before it is parked "
             "with an alert, so it holds up later batches of its agent no longer"),
    Variable("WARDEN_AUDIT_WITNESS_PATH", str, "", "append-only file (fsync) of every checkpoint head and verified "
             "batch, outside the database; put it where the database roles cannot write",
             "$WARDEN_VAR_DIR/audit-witness.jsonl"),
    Variable("WARDEN_AUDIT_WITNESS_SYSLOG", str, "", "remote syslog collector (tcp://host:port or udp://host:port) "
             "that also receives every witness line as an RFC 5424 message; unset: the local file only"),
    Variable("WARDEN_AUDIT_WITNESS_URL", str, "", "HTTP witness collector log (e.g. https://witness.example/logs/prod) "
             "that also receives every witness line, checkpoint heads with their signed statements; unset: none"),
    Variable("WARDEN_AUDIT_WITNESS_TOKEN", str, "", "bearer token the HTTP witness collector asks writers for"),
    Variable("WARDEN_AUDIT_CHECKPOINT_PUBLIC_KEYS", tuple, (), "the checkpoint public keys verification trusts "
             "(base64 or PEM, comma-separated; two during a rotation); unset: the database's, with a warning"),
    Variable("WARDEN_AUDIT_BUNDLE_HEAD_SECONDS", int, 3600, "bundles carry the newest signed audit head as of "
             "the last boundary of this many seconds (at most one rebuild per period); 0: always the newest"),
    Variable("WARDEN_AUDIT_ORIGINALS_ROLES", tuple, (), "roles that may export original (unmasked) audit records; "
             "each export is recorded"),
    # -- compliance --
    Variable("WARDEN_COMPLIANCE_PERIOD_DAYS", int, 90, "days back from now a gap report looks at"),
    Variable("WARDEN_COMPLIANCE_WEBHOOK_URL", str, "", "gap-report notices (regressions, expiring attestations) "
             "are POSTed here as JSON from a worker; unset: off"),
    # -- detection (docs/detection.md) --
    Variable("WARDEN_DETECTION_WARMUP_HOURS", float, 72.0, "hours an agent is only learned"),
    Variable("WARDEN_DETECTION_WARMUP_CALLS", int, 200, "calls an agent is only learned"),
    Variable("WARDEN_DETECTION_CHUNK", int, 5000, "events per detection transaction"),
    Variable("WARDEN_DETECTION_WEBHOOK_URL", str, "", "alert webhook (off when empty)"),
    Variable("WARDEN_DETECTION_WEBHOOK_SECRET", str, "", "HMAC key of the webhook signature; never logged"),
    Variable("WARDEN_DETECTION_WEBHOOK_TIMEOUT", float, 5.0, "seconds per webhook attempt"),
    Variable("WARDEN_DETECTION_ALERT_EMAILS", tuple, (), "alert recipients, comma-separated"),
    Variable("WARDEN_DETECTION_NOTIFY_SEVERITY", str, "medium", "lowest severity delivered by webhook and e-mail "
             "(low, medium, high, critical); lower ones stay in the console inbox"),
    Variable("WARDEN_DETECTION_REMINDER_HOURS", tuple, ("72", "24", "4"), "hours before a clock runs out that a "
             "reminder goes out, comma-separated"),
    Variable("WARDEN_DETECTION_DECISION_LOG_LAG", float, 2.0, "seconds a decision log waits before detection "
             "reads it (its insert may still commit)"),
    # -- metrics (docs/deploy.md) --
    Variable("WARDEN_METRICS_TOKEN", str, "", "bearer token GET /metrics asks for; unset: open (keep it to the "
             "monitoring network, as deploy/ does)"),
    Variable("WARDEN_METRICS_PORT", int, 0, "port a Celery worker serves its Prometheus metrics on; 0: none"),
)

BY_NAME = {variable.name: variable for variable in VARIABLES}


def read(name: str, default: Any = None) -> Any:
    """The parsed value of variable `name`; its declared default (or `default`, for the ones
    computed in settings) when unset or empty."""
    variable = BY_NAME[name]  # KeyError: declare the variable above first
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return variable.default if variable.default is not None else default
    return variable.parse(raw)


def setting(name: str) -> Any:
    """A declared variable's value as the control plane uses it: Django settings' (settings/base.py
    reads every variable into them, and tests override them there), else read from the environment."""
    from django.conf import settings

    BY_NAME[name]  # KeyError: declare the variable above first
    if hasattr(settings, name):
        return getattr(settings, name)
    return read(name)


def default_text(variable: Variable) -> str:
    """The default as docs/configuration.md and .env.example state it."""
    if variable.default_text:
        return variable.default_text
    if variable.kind is bool:
        return "1" if variable.default else "0"
    if variable.kind is tuple:
        return ",".join(variable.default) or "empty"
    return str(variable.default) if variable.default != "" else "empty"
