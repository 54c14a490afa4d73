"""Settings come from the environment, with a working embedded default. Each case runs in a
fresh interpreter, since Django reads settings once per process."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; from django.conf import settings; django.setup();"
    "print(json.dumps({'engine': settings.DATABASES['default']['ENGINE'],"
    " 'name': str(settings.DATABASES['default']['NAME']), 'eager': settings.CELERY_TASK_ALWAYS_EAGER,"
    " 'broker': settings.CELERY_BROKER_URL, 'cache': settings.CACHES['default']['BACKEND'],"
    " 'debug': settings.DEBUG, 'secret': settings.SECRET_KEY,"
    " 'hsts': getattr(settings, 'SECURE_HSTS_SECONDS', 0), 'ssl_redirect': getattr(settings, 'SECURE_SSL_REDIRECT', False),"
    " 'options': settings.DATABASES['default'].get('OPTIONS', {}), 'jobs': settings.WARDEN_IN_PROCESS_JOBS}))"
)


def run_settings(tmp_path, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WARDEN_", "DATABASE_URL", "REDIS_URL"))}
    clean.update({"DJANGO_SETTINGS_MODULE": "controlplane.settings", "WARDEN_VAR_DIR": str(tmp_path)}, **env)
    return subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True)


def test_embedded_default_is_sqlite_under_var_with_eager_celery_and_a_kept_secret(tmp_path):
    first = run_settings(tmp_path)
    assert first.returncode == 0, first.stderr
    config = json.loads(first.stdout)
    assert config["engine"] == "django.db.backends.sqlite3"
    assert config["name"] == str(tmp_path / "warden.sqlite3")
    assert config["eager"] is True
    assert config["broker"] == "memory://"
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    second = json.loads(run_settings(tmp_path).stdout)
    assert second["secret"] == config["secret"], "the generated secret must survive a restart"


def test_database_and_redis_urls_switch_to_postgresql_and_a_real_broker(tmp_path):
    result = run_settings(
        tmp_path, DATABASE_URL="postgres://warden@db.internal:5432/warden", REDIS_URL="redis://cache:6379/0"
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["engine"] == "django.db.backends.postgresql"
    assert config["name"] == "warden"
    assert config["eager"] is False
    assert config["broker"] == "redis://cache:6379/0"
    assert config["cache"] == "django.core.cache.backends.redis.RedisCache"


SECURE_PRODUCTION = {
    "WARDEN_PRODUCTION": "1",
    "WARDEN_SECRET_KEY": "k3y-" + "abcdefghij" * 5,
    "WARDEN_ALLOWED_HOSTS": "warden.example.com",
    "DATABASE_URL": "postgres://warden@db.internal:5432/warden",
    "REDIS_URL": "redis://cache:6379/0",
}


def test_production_mode_refuses_to_invent_a_secret(tmp_path):
    result = run_settings(tmp_path, **{**SECURE_PRODUCTION, "WARDEN_SECRET_KEY": ""})
    assert result.returncode != 0
    assert "WARDEN_SECRET_KEY: must be set" in result.stderr
    assert not (tmp_path / "secret_key").exists()


def test_production_with_secure_settings_starts_with_hsts_and_https_redirect(tmp_path):
    ok = run_settings(tmp_path, **SECURE_PRODUCTION)
    assert ok.returncode == 0, ok.stderr
    config = json.loads(ok.stdout)
    assert config["debug"] is False
    assert config["hsts"] == 31_536_000
    assert config["ssl_redirect"] is True


def test_production_refuses_every_insecure_setting_with_one_message_each(tmp_path):
    result = run_settings(
        tmp_path, WARDEN_PRODUCTION="1", WARDEN_DEBUG="1", WARDEN_SECRET_KEY="x", WARDEN_ALLOWED_HOSTS="*",
        WARDEN_CELERY_EAGER="1", WARDEN_ENCRYPTION_KEY="not-a-fernet-key",
    )
    assert result.returncode != 0
    messages = [line for line in result.stderr.splitlines() if line.startswith("- ")]
    named = [message[2:].split(":", 1)[0] for message in messages]
    assert named == [
        "WARDEN_DEBUG", "WARDEN_SECRET_KEY", "WARDEN_ALLOWED_HOSTS", "DATABASE_URL", "WARDEN_CELERY_EAGER",
        "WARDEN_ENCRYPTION_KEY",
    ]


def test_production_refuses_each_insecure_setting_alone(tmp_path):
    for variable, value in [
        ("WARDEN_DEBUG", "1"), ("WARDEN_SECRET_KEY", "a" * 60), ("WARDEN_ALLOWED_HOSTS", "warden.example.com,*"),
        ("DATABASE_URL", f"sqlite:///{tmp_path}/db.sqlite3"), ("WARDEN_CELERY_EAGER", "1"),
        ("WARDEN_ENCRYPTION_KEY", "x" * 44),
    ]:
        result = run_settings(tmp_path, **{**SECURE_PRODUCTION, variable: value})
        assert result.returncode != 0, variable
        assert f"- {variable}: " in result.stderr, (variable, result.stderr[-500:])


def test_debug_is_off_unless_asked_for_even_with_database_and_redis_configured(tmp_path):
    for env in [{}, {"DATABASE_URL": "postgres://warden@db.internal:5432/warden", "REDIS_URL": "redis://cache:6379/0"}]:
        result = run_settings(tmp_path, **env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["debug"] is False
    asked = run_settings(tmp_path, WARDEN_DEBUG="1")
    assert json.loads(asked.stdout)["debug"] is True


def test_a_malformed_value_names_the_variable(tmp_path):
    result = run_settings(tmp_path, WARDEN_MAX_REQUEST_BYTES="2MB")
    assert result.returncode != 0
    assert "WARDEN_MAX_REQUEST_BYTES: '2MB' is not a whole number" in result.stderr
    result = run_settings(tmp_path, WARDEN_DEBUG="maybe")
    assert "WARDEN_DEBUG: 'maybe' is not a yes/no value" in result.stderr


def test_an_invalid_encryption_key_is_refused_even_in_development(tmp_path):
    result = run_settings(tmp_path, WARDEN_ENCRYPTION_KEY="short")
    assert result.returncode != 0
    assert "- WARDEN_ENCRYPTION_KEY: not a Fernet key" in result.stderr


def test_the_embedded_default_runs_sqlite_in_wal_mode_with_a_busy_timeout_and_in_process_jobs(tmp_path):
    config = json.loads(run_settings(tmp_path).stdout)
    assert config["options"]["timeout"] >= 5
    assert "journal_mode=WAL" in config["options"]["init_command"]
    assert config["jobs"] is True
    with_redis = json.loads(run_settings(tmp_path, REDIS_URL="redis://cache:6379/0").stdout)
    assert with_redis["jobs"] is False
    probe = (
        "import django; django.setup(); from django.db import connection;"
        "c = connection.cursor(); print(c.execute('PRAGMA journal_mode').fetchone()[0])"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WARDEN_", "DATABASE_URL", "REDIS_URL"))}
    clean.update({"DJANGO_SETTINGS_MODULE": "controlplane.settings", "WARDEN_VAR_DIR": str(tmp_path)})
    mode = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=clean, capture_output=True, text=True)
    assert mode.stdout.strip() == "wal", mode.stderr
