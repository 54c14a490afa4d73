"""Settings for the Warden control plane, all read from the environment.

With nothing set, Warden runs on its embedded default: SQLite under var/, Celery
tasks run eagerly in-process, a secret key generated once and kept under var/.
DATABASE_URL and REDIS_URL switch to PostgreSQL and a real Celery broker.
Every variable is declared once in settings/registry.py (type, default, description);
.env.example and docs/configuration.md list exactly those.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from controlplane.settings.production import encryption_key_problem, insecure_settings
from controlplane.settings.registry import read

BASE_DIR = Path(__file__).resolve().parent.parent.parent

VAR_DIR = Path(read("WARDEN_VAR_DIR") or BASE_DIR / "var")
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Production mode refuses every insecure setting instead of inventing a default.
PRODUCTION = read("WARDEN_PRODUCTION")
# Debug pages show settings (broker URLs included): only when asked for, never by default.
DEBUG = read("WARDEN_DEBUG")


def _secret_key() -> str:
    configured = read("WARDEN_SECRET_KEY")
    if configured or PRODUCTION:
        return configured  # an empty key in production is refused below, with the other problems
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        # Created with 0600 so the generated key is readable only by its owner.
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
# Earlier secret keys: Django accepts sessions signed with them, core.crypto decrypts with
# keys derived from them, so rotating the secret key loses nothing.
SECRET_KEY_FALLBACKS = list(read("WARDEN_SECRET_KEY_FALLBACKS"))
# Fernet key for secrets at rest (signing keys, checkpoint keys, sealed records); empty:
# derived from SECRET_KEY. Fallbacks stay readable; `manage.py rotate_encryption_key` re-encrypts.
WARDEN_ENCRYPTION_KEY = read("WARDEN_ENCRYPTION_KEY")
WARDEN_ENCRYPTION_KEY_FALLBACKS = read("WARDEN_ENCRYPTION_KEY_FALLBACKS")

ALLOWED_HOSTS = list(
    read("WARDEN_ALLOWED_HOSTS", () if PRODUCTION else ("127.0.0.1", "localhost", "testserver", "[::1]"))
)
CSRF_TRUSTED_ORIGINS = list(read("WARDEN_CSRF_TRUSTED_ORIGINS"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "controlplane.core",
    "controlplane.accounts",
    "controlplane.changelog",
    "controlplane.identity",
    "controlplane.delegation",
    "controlplane.policies",
    "controlplane.bundles",
    "controlplane.opa",
    "controlplane.audit",
    "controlplane.compliance",
    "controlplane.detection",
    "controlplane.authoring",
    "controlplane.approvals",
    "controlplane.console",
    # seed_demo: it seeds the other apps and nothing depends on it.
    "controlplane.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # A NUL in a filter or path is the caller's 400, never the database's 500.
    "controlplane.core.middleware.StorableInputMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
ASGI_APPLICATION = "controlplane.asgi.application"
WSGI_APPLICATION = "controlplane.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = read("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'warden.sqlite3'}"
# Under ASGI each sync request runs in its own thread, so a kept connection would outlive
# its thread unused: connections are closed after each request unless configured otherwise.
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=read("WARDEN_DB_CONN_MAX_AGE"), conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Named after the configured database, so two checkouts on one server never share one.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = (
        read("WARDEN_TEST_DATABASE") or f"test_{DATABASES['default']['NAME']}"
    )
else:
    # The embedded default has concurrent writers too (decision-log uploads during a kill
    # switch): WAL lets readers run beside the writer, and a writer waits for the lock up to
    # 20 s instead of failing at once with "database is locked". IMMEDIATE takes the write
    # lock when a transaction starts, so two transactions never deadlock upgrading a read lock.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise expects it even before collectstatic has run
# The console's build (frontend/dist, made by `npm run build`) is served as /static/console/.
CONSOLE_BUILD_DIR = BASE_DIR / "frontend" / "dist"
STATICFILES_DIRS = [("console", CONSOLE_BUILD_DIR)] if CONSOLE_BUILD_DIR.is_dir() else []
# Vite names assets by content hash (index-Bx8f3a1Q.js): they may be cached for good.
WHITENOISE_IMMUTABLE_FILE_TEST = r"^.+/console/assets/.+-[A-Za-z0-9_-]{8,}\.\w+$"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Redis is the Celery broker and the cache when REDIS_URL is set; otherwise tasks
# run eagerly in the calling process and the cache is local memory.
REDIS_URL = read("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or "cache+memory://"
CELERY_TASK_ALWAYS_EAGER = read("WARDEN_CELERY_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
# A task is acknowledged only after it finished, so a worker that dies mid-task
# leaves it on the queue for another worker.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# A task held by a worker that died comes back after this many seconds (Redis broker);
# the audit requeue job covers batches in between.
# A broker outage must not hold a request: publishing gives up after WARDEN_BROKER_TIMEOUT
# seconds, without retries, and the periodic requeue/reconcile jobs send the work later.
WARDEN_BROKER_TIMEOUT = read("WARDEN_BROKER_TIMEOUT")
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": read("WARDEN_CELERY_VISIBILITY_TIMEOUT"),
    "socket_connect_timeout": WARDEN_BROKER_TIMEOUT,
    "socket_timeout": WARDEN_BROKER_TIMEOUT,
    "max_retries": 0,
}
CELERY_BROKER_CONNECTION_TIMEOUT = WARDEN_BROKER_TIMEOUT
CELERY_TASK_PUBLISH_RETRY = False
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = WARDEN_BROKER_TIMEOUT
CELERY_REDIS_SOCKET_TIMEOUT = WARDEN_BROKER_TIMEOUT
# The embedded default has no beat: the web process runs the periodic jobs itself.
WARDEN_IN_PROCESS_JOBS = read("WARDEN_IN_PROCESS_JOBS", CELERY_TASK_ALWAYS_EAGER)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "controlplane.accounts.authentication.APITokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["controlplane.accounts.permissions.RolePermission"],
    "DEFAULT_PAGINATION_CLASS": "controlplane.core.pagination.WardenPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "controlplane.core.exception_handler.warden_exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["controlplane.core.parsers.BoundedJSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Warden control plane API",
    "DESCRIPTION": (
        "Agent identities, keys, scopes and the kill switch; users, roles and API tokens; "
        "the change log of every mutation."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and docs are public, like any API reference; every endpoint they describe is not.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "AgentStatusEnum": "controlplane.identity.models.AgentStatus",
        "RiskTierEnum": "controlplane.identity.models.RiskTier",
        "GapReportStatusEnum": "controlplane.compliance.models.ReportStatus",
        "ControlStatusEnum": "controlplane.compliance.models.ControlStatus",
        "SeverityEnum": "controlplane.detection.models.Severity",
        "IncidentStatusEnum": "controlplane.detection.models.IncidentStatus",
        "TimelineKindEnum": "controlplane.detection.models.TimelineKind",
        "AttestationKindEnum": "controlplane.compliance.models.AttestationKind",
        "ApprovalStateEnum": "controlplane.approvals.models.ApprovalState",
        "StateEnum": "controlplane.detection.models.AlertState",
    },
}

# Requests larger than this are refused before they are parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = read("WARDEN_MAX_REQUEST_BYTES")
# Deeper JSON is refused with a 400 before it can exhaust the parser's recursion.
WARDEN_MAX_JSON_DEPTH = read("WARDEN_MAX_JSON_DEPTH")

SESSION_COOKIE_SECURE = PRODUCTION
# Console sessions end after this many seconds without a request (each request renews it).
SESSION_COOKIE_AGE = read("WARDEN_SESSION_SECONDS")
SESSION_SAVE_EVERY_REQUEST = True
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
if PRODUCTION:
    SECURE_HSTS_SECONDS = read("WARDEN_HSTS_SECONDS")
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_SSL_REDIRECT = True
    # Load balancers probe over plain HTTP inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^(?:healthz|livez|readyz|metrics)$"]  # probes and scrapes speak plain HTTP
if read("WARDEN_BEHIND_TLS_PROXY"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Every audit and compliance setting, so `override_settings` reaches them in tests.
WARDEN_AUDIT_MAX_BATCH_RECORDS = read("WARDEN_AUDIT_MAX_BATCH_RECORDS")
WARDEN_AUDIT_MAX_BATCH_BYTES = read("WARDEN_AUDIT_MAX_BATCH_BYTES")
WARDEN_AUDIT_MAX_CLOCK_SKEW = read("WARDEN_AUDIT_MAX_CLOCK_SKEW")
WARDEN_AUDIT_SENSITIVE_KEYS = read("WARDEN_AUDIT_SENSITIVE_KEYS")
WARDEN_AUDIT_RETENTION_DAYS = read("WARDEN_AUDIT_RETENTION_DAYS")
WARDEN_AUDIT_MIN_RETENTION_DAYS = read("WARDEN_AUDIT_MIN_RETENTION_DAYS")
WARDEN_AUDIT_QUEUE = read("WARDEN_AUDIT_QUEUE")
# Only the retention role may run the retention job: its own queue, its own worker.
CELERY_TASK_ROUTES = {"audit.retention": {"queue": read("WARDEN_AUDIT_RETENTION_QUEUE")}}
WARDEN_AUDIT_CHECKPOINT_MAX_EVENTS = read("WARDEN_AUDIT_CHECKPOINT_MAX_EVENTS")
WARDEN_AUDIT_STALE_BATCH_SECONDS = read("WARDEN_AUDIT_STALE_BATCH_SECONDS")
WARDEN_AUDIT_MAX_BATCH_ATTEMPTS = read("WARDEN_AUDIT_MAX_BATCH_ATTEMPTS")
WARDEN_AUDIT_WITNESS_PATH = read("WARDEN_AUDIT_WITNESS_PATH")
WARDEN_AUDIT_WITNESS_SYSLOG = read("WARDEN_AUDIT_WITNESS_SYSLOG")
WARDEN_AUDIT_WITNESS_URL = read("WARDEN_AUDIT_WITNESS_URL")
WARDEN_AUDIT_WITNESS_TOKEN = read("WARDEN_AUDIT_WITNESS_TOKEN")
WARDEN_AUDIT_CHECKPOINT_PUBLIC_KEYS = read("WARDEN_AUDIT_CHECKPOINT_PUBLIC_KEYS")
WARDEN_AUDIT_ORIGINALS_ROLES = read("WARDEN_AUDIT_ORIGINALS_ROLES")
WARDEN_AUDIT_BUNDLE_HEAD_SECONDS = read("WARDEN_AUDIT_BUNDLE_HEAD_SECONDS")
# Discovery gives OPA a policy and a registry bundle per environment (controlplane/bundles/parts.py).
WARDEN_OPA_SPLIT_BUNDLES = read("WARDEN_OPA_SPLIT_BUNDLES")
WARDEN_OPA_UPLOAD_QUEUE_MAX_ITEMS = read("WARDEN_OPA_UPLOAD_QUEUE_MAX_ITEMS")
WARDEN_OPA_UPLOAD_QUEUE_MAX_BYTES = read("WARDEN_OPA_UPLOAD_QUEUE_MAX_BYTES")
WARDEN_COMPLIANCE_PERIOD_DAYS = read("WARDEN_COMPLIANCE_PERIOD_DAYS")
WARDEN_COMPLIANCE_WEBHOOK_URL = read("WARDEN_COMPLIANCE_WEBHOOK_URL")
# Detection (controlplane/detection/conf.py reads these, so tests override them here).
WARDEN_DETECTION_WARMUP_HOURS = read("WARDEN_DETECTION_WARMUP_HOURS")
WARDEN_DETECTION_WARMUP_CALLS = read("WARDEN_DETECTION_WARMUP_CALLS")
WARDEN_DETECTION_CHUNK = read("WARDEN_DETECTION_CHUNK")
WARDEN_DETECTION_WEBHOOK_URL = read("WARDEN_DETECTION_WEBHOOK_URL")
WARDEN_DETECTION_WEBHOOK_SECRET = read("WARDEN_DETECTION_WEBHOOK_SECRET")
WARDEN_DETECTION_WEBHOOK_TIMEOUT = read("WARDEN_DETECTION_WEBHOOK_TIMEOUT")
WARDEN_DETECTION_ALERT_EMAILS = read("WARDEN_DETECTION_ALERT_EMAILS")
WARDEN_DETECTION_NOTIFY_SEVERITY = read("WARDEN_DETECTION_NOTIFY_SEVERITY")
WARDEN_DETECTION_REMINDER_HOURS = read("WARDEN_DETECTION_REMINDER_HOURS")
WARDEN_DETECTION_DECISION_LOG_LAG = read("WARDEN_DETECTION_DECISION_LOG_LAG")
# Passwords `manage.py setup_db_roles` gives the database roles (controlplane/audit/database_roles.py).
WARDEN_DB_OWNER_PASSWORD = read("WARDEN_DB_OWNER_PASSWORD")
WARDEN_DB_APP_PASSWORD = read("WARDEN_DB_APP_PASSWORD")
WARDEN_DB_RETENTION_PASSWORD = read("WARDEN_DB_RETENTION_PASSWORD")
WARDEN_METRICS_TOKEN = read("WARDEN_METRICS_TOKEN")
WARDEN_METRICS_PORT = read("WARDEN_METRICS_PORT")

# Refused at start, all at once: an invalid encryption key in any mode (nothing stored at
# rest could be read), and in production every insecure setting.
_problems = [
    problem
    for name, key in [("WARDEN_ENCRYPTION_KEY", WARDEN_ENCRYPTION_KEY)]
    + [("WARDEN_ENCRYPTION_KEY_FALLBACKS", key) for key in WARDEN_ENCRYPTION_KEY_FALLBACKS]
    if key and (problem := encryption_key_problem(name, key))
]
if PRODUCTION:
    _problems = insecure_settings(
        debug=DEBUG, secret_key=SECRET_KEY, allowed_hosts=ALLOWED_HOSTS,
        database_engine=DATABASES["default"]["ENGINE"], eager_tasks=CELERY_TASK_ALWAYS_EAGER,
        encryption_key=WARDEN_ENCRYPTION_KEY,
    ) + [p for p in _problems if not p.startswith("WARDEN_ENCRYPTION_KEY:")]
if _problems:
    raise ImproperlyConfigured(
        "Warden refuses to start with these settings:\n" + "\n".join(f"- {p}" for p in _problems)
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": read("WARDEN_LOG_LEVEL")},
}
