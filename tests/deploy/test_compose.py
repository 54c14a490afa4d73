"""deploy/compose.yaml: valid for docker-compose (Debian's docker-compose, `config`), and
the same least-privilege topology as the Kubernetes manifests."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from tests.deploy.conftest import DEPLOY

REQUIRED = {
    "WARDEN_SECRET_KEY": "s" * 10 + "0123456789abcdefghijklmnopqrstuvwxyz0123456789",
    "WARDEN_ENCRYPTION_KEY": "ZGV2LW9ubHktZmVybmV0LWtleS0zMi1ieXRlcy1vayE=",
    "POSTGRES_PASSWORD": "admin-pw", "WARDEN_DB_OWNER_PASSWORD": "owner-pw",
    "WARDEN_DB_APP_PASSWORD": "app-pw", "WARDEN_DB_RETENTION_PASSWORD": "retention-pw",
}
APP = ("web", "worker", "retention-worker", "beat", "migrate")


def compose_config(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WARDEN_", "POSTGRES_"))}
    return subprocess.run(["docker-compose", "-f", str(DEPLOY / "compose.yaml"), "--profile", "agents", "config", *args],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def services() -> dict:
    result = compose_config(REQUIRED)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_docker_compose_accepts_the_file():
    result = compose_config(REQUIRED, "-q")
    assert (result.returncode, result.stderr) == (0, "")


def test_a_missing_secret_is_refused_by_name():
    result = compose_config({k: v for k, v in REQUIRED.items() if k != "WARDEN_DB_APP_PASSWORD"}, "-q")
    assert result.returncode != 0 and "set WARDEN_DB_APP_PASSWORD" in result.stderr


def _database_user(service: dict) -> str:
    url = service["environment"]["DATABASE_URL"]
    return url.split("://", 1)[1].split(":", 1)[0]


def test_each_process_connects_with_its_least_privilege_role(services):
    services = services["services"]
    assert {name: _database_user(services[name]) for name in APP} == {
        "web": "warden_app", "worker": "warden_app", "beat": "warden_app",
        "retention-worker": "warden_retention", "migrate": "postgres",
    }
    assert "setup_db_roles --owner warden_owner --app warden_app --retention warden_retention" in " ".join(
        services["migrate"]["command"])
    for name in ("web", "worker", "retention-worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("worker", "retention-worker"):  # prefork children's metrics, on the tmpfs
        assert services[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    retention = services["retention-worker"]["command"]
    assert retention[retention.index("-Q") + 1] == services["web"]["environment"]["WARDEN_AUDIT_RETENTION_QUEUE"]


def _mounts(service: dict) -> dict[str, str]:
    """target -> source; docker-compose 1.29 prints the short `source:target[:mode]` form."""
    mounts = {}
    for mount in service.get("volumes", []):
        if isinstance(mount, dict):
            mounts[mount["target"]] = mount["source"]
        else:
            source, target = mount.split(":")[:2]
            mounts[target] = source
    return mounts


def test_the_witness_has_its_own_volume_outside_the_database(services):
    witness_path = services["services"]["web"]["environment"]["WARDEN_AUDIT_WITNESS_PATH"]
    for name in ("web", "worker", "retention-worker"):
        mounts = _mounts(services["services"][name])
        assert mounts[os.path.dirname(witness_path)] == "witness", name
    assert "witness" in services["volumes"]
    assert "witness" not in _mounts(services["services"]["postgres"]).values()


def test_processes_are_unprivileged_and_only_web_has_a_route_out(services):
    networks = services["networks"]
    assert networks["backend"]["internal"] is True and networks["agents"]["internal"] is True
    for name, service in services["services"].items():
        if name in ("postgres", "redis"):
            continue
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert service["user"].split(":")[0] != "0", name
        assert "no-new-privileges:true" in service["security_opt"], name
        routed = set(service.get("networks", {})) - {"backend", "agents"}
        assert routed == ({"edge"} if name == "web" else set()), name


def test_the_example_agents_sit_beside_a_real_opa_and_warden_sidecar(services):
    services = services["services"]
    assert services["opa"]["image"].startswith("openpolicyagent/opa:1.")
    assert "--config-file=/etc/opa/config.yaml" in services["opa"]["command"]
    assert services["warden-sidecar"]["command"][:2] == ["warden", "sidecar"]
    for engine in ("opa", "warden-sidecar"):
        mounts = _mounts(services[engine])
        assert mounts["/etc/opa/config.yaml"] == str(DEPLOY / "opa" / "config.token-path.yaml")
        assert mounts["/var/run/secrets/warden/opa-token"].endswith("deploy/secrets/opa-token")
    assert services["agent"]["network_mode"] == "service:opa"
    assert services["agent-with-sidecar"]["network_mode"] == "service:warden-sidecar"
    assert not services["opa"].get("ports") and not services["warden-sidecar"].get("ports")
