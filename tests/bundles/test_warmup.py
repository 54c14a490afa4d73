"""A web process warms, at start, what its first registry rebuild would otherwise pay on the
kill switch's path (controlplane/bundles/warmup.py): the active policy set read from its
archive and compile-checked, the signing key loaded, every agent's JSON encoded."""

from __future__ import annotations

import pytest

from controlplane.bundles import archive, registry, services, warmup
from controlplane.bundles.models import Bundle, Environment
from controlplane.changelog.models import ChangeAction, ObjectChange
from controlplane.identity import services as identity_services
from tests.bundles.factories import environment
from tests.bundles.test_incremental_build import POLICIES
from tests.identity.factories import AgentFactory

pytestmark = pytest.mark.django_db



def _forget_everything() -> None:
    """This process as a web process is when it starts: nothing read, compiled, encoded or loaded."""
    services._compiled.clear()
    services._policy_files.clear()
    services._last_encoded.clear()
    registry.agents_json.clear()
    archive._rsa_private_key.cache_clear()


@pytest.fixture
def published(admin_user):
    dev = environment("dev", by=admin_user)
    victim = AgentFactory(name="bot-victim", environments=["dev"])
    AgentFactory(name="bot-bystander", environments=["dev"])
    services.activate_bundle(
        dev, services.build_bundle(dev, policy_files=POLICIES, by=admin_user, reason="test"),
        by=admin_user, action=ChangeAction.ACTIVATE,
    )
    _forget_everything()
    yield dev, victim
    _forget_everything()


@pytest.fixture
def rebuild_costs(monkeypatch):
    """What a rebuild pays that a warm process has cached, counted as it happens."""
    counted = {"policy sets compiled": 0, "keys loaded": 0, "archives read": 0, "agents encoded": 0}

    def counting(name, func):
        def counted_call(*args, **kwargs):
            counted[name] += 1
            return func(*args, **kwargs)
        return counted_call

    monkeypatch.setattr(services, "compile_modules", counting("policy sets compiled", services.compile_modules))
    monkeypatch.setattr(archive.serialization, "load_pem_private_key",
                        counting("keys loaded", archive.serialization.load_pem_private_key))
    monkeypatch.setattr(archive, "read_tar_gz", counting("archives read", archive.read_tar_gz))
    monkeypatch.setattr(registry, "_entry", counting("agents encoded", registry._entry))
    return counted


def _suspend(victim, admin_user, counted: dict) -> dict:
    """Suspend `victim`; what its rebuild cost, counted before anything here reads the archive."""
    assert identity_services.suspend_agent(victim, by=admin_user, reason="leaked key").status == "suspended"
    return dict(counted)


def _delivered(dev: Environment) -> None:
    dev.refresh_from_db()
    data = archive.read_tar_gz(bytes(dev.active_bundle.archive))["data.json"]
    assert b'"bot-victim"' in data and b'"status":"suspended"' in data


def test_after_warming_a_suspension_rebuilds_with_nothing_left_to_read_compile_or_load(
    published, rebuild_costs, admin_user
):
    dev, victim = published
    assert warmup.warm_rebuild_caches() == ["dev"]
    for name in rebuild_costs:
        rebuild_costs[name] = 0

    costs = _suspend(victim, admin_user, rebuild_costs)

    _delivered(dev)
    # The one agent that changed is encoded again; nothing else a cold process pays.
    assert costs == {"policy sets compiled": 0, "keys loaded": 0, "archives read": 0, "agents encoded": 1}


def test_a_cold_process_pays_them_on_the_kill_switch_path(published, rebuild_costs, admin_user):
    dev, victim = published

    costs = _suspend(victim, admin_user, rebuild_costs)

    _delivered(dev)
    assert costs["policy sets compiled"] == 1
    assert costs["keys loaded"] == 1
    assert costs["archives read"] == 1
    assert costs["agents encoded"] == 2  # every agent, the bystander too


def test_warming_changes_nothing_stored(published, admin_user):
    dev, _ = published
    def stored():
        env = Environment.objects.select_related("active_bundle").get(pk=dev.pk)
        return env.active_bundle_id, env.active_bundle.etag, Bundle.objects.count(), ObjectChange.objects.count()

    before = stored()
    warmup.warm_rebuild_caches()
    assert stored() == before


def test_a_failed_warm_up_is_logged_and_leaves_the_process_serving(monkeypatch, caplog):
    def broken():
        raise RuntimeError("no database yet")

    monkeypatch.setattr(warmup, "warm_rebuild_caches", broken)
    warmup.warm_in_background().join(timeout=30)
    assert "could not warm the bundle rebuild caches" in caplog.text
