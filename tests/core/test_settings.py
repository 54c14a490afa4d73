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
    " 'debug': settings.DEBUG, 'secret': settings.SECRET_KEY}))"
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


def test_production_mode_refuses_to_invent_a_secret(tmp_path):
    result = run_settings(tmp_path, WARDEN_PRODUCTION="1")
    assert result.returncode != 0
    assert "WARDEN_SECRET_KEY must be set" in result.stderr
    assert not (tmp_path / "secret_key").exists()
    ok = run_settings(tmp_path, WARDEN_PRODUCTION="1", WARDEN_SECRET_KEY="s" * 50)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["debug"] is False
