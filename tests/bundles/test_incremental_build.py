"""A registry change costs work proportional to the change at every step of the build
(issue #20): the registry's runs (controlplane/bundles/packing.py RunList) are rebuilt only
where an entry changed, data.json is never joined and is rehashed only after the first run
that changed, and the archives are written without re-reading or re-encoding megabytes.
The result stays byte for byte what a build from scratch gives."""

from __future__ import annotations

import hashlib
import json
import types

import pytest

from agents_sdk.bundles.format import canonical_json
from controlplane.bundles import archive, packing, registry, services
from controlplane.bundles.models import Bundle, BundlePart, Environment
from controlplane.bundles.selectors import registry_data
from controlplane.bundles.signing import active_signing_key, private_key_pem
from controlplane.changelog.models import ChangeAction
from controlplane.identity import services as identity_services
from controlplane.identity.models import AgentKey
from tests.bundles.factories import environment
from tests.identity.factories import AgentFactory, AgentKeyFactory
from tests.opa.opa_client import verify_bundle

pytestmark = pytest.mark.django_db

POLICIES = {
    "warden/killswitch.rego": (
        "package warden.killswitch\n\n"
        "default active := false\n\n"
        'active if data.warden_registry.agents[input.agent.name].status == "active"\n'
    )
}


@pytest.fixture(autouse=True)
def small_runs(monkeypatch):
    monkeypatch.setattr(registry, "CHUNK_AGENTS", 16)  # many runs at a few hundred agents
    registry.agents_json.clear()
    packing._hash_states.clear()
    yield
    registry.agents_json.clear()
    packing._hash_states.clear()


def _publish(env, by):
    return services.activate_bundle(
        env,
        services.build_bundle(env, policy_files=POLICIES, by=by, reason="test"),
        by=by,
        action=ChangeAction.ACTIVATE,
    )


class _CountingSHA256:
    """hashlib.sha256 that counts the bytes it is given."""

    hashed = 0

    def __init__(self, data: bytes = b"", *, inner=None, **kwargs) -> None:
        self._inner = inner or hashlib.sha256()
        if data:
            self.update(data)

    def update(self, data) -> None:
        _CountingSHA256.hashed += len(data)
        self._inner.update(data)

    def copy(self):
        return _CountingSHA256(inner=self._inner.copy())

    def hexdigest(self) -> str:
        return self._inner.hexdigest()

    def digest(self) -> bytes:
        return self._inner.digest()


def _from_scratch(part: BundlePart, env: Environment) -> archive.BuiltArchive:
    """The registry part built again in a process that never built this environment."""
    registry.agents_json.clear()
    packing._hash_states.clear()
    key = active_signing_key()
    pem = private_key_pem(key)
    return archive.build_archive(
        policy_files={},
        data=services.bundle_data_json(env),
        roots=[services.REGISTRY_ROOT],
        metadata=part.manifest["metadata"],
        key_id=key.kid,
        signer=lambda header, payload: archive.sign_rs256(header, payload, pem),
    )


def test_a_suspension_hashes_only_the_bytes_after_the_change(admin_user, monkeypatch):
    counting = types.SimpleNamespace(
        **{name: getattr(hashlib, name) for name in ("sha1", "md5")}, sha256=_CountingSHA256
    )
    for module in (packing, archive, services):
        monkeypatch.setattr(module, "hashlib", counting)
    dev = environment("dev", by=admin_user)
    AgentFactory.create_batch(600, environments=["dev"])
    victim = AgentFactory(name="zz-victim-bot", environments=["dev"])
    _publish(dev, admin_user)
    data_json = canonical_json(services.bundle_data(dev))
    _CountingSHA256.hashed = 0
    identity_services.suspend_agent(victim, by=admin_user, reason="leaked key")
    active = Environment.objects.get(pk=dev.pk).active_bundle
    part = BundlePart.objects.get(bundle=active, kind=BundlePart.Kind.REGISTRY)
    assert (
        verify_bundle(
            bytes(part.archive), public_key_pem=active_signing_key().public_key_pem, keyid=active_signing_key().kid
        ).data["warden_registry"]["agents"]["zz-victim-bot"]["status"]
        == "suspended"
    )
    # Before: data.json was hashed four times over and each archive once more (several MB
    # at 100,000 agents); now the runs after the change and the small files.
    assert _CountingSHA256.hashed < len(data_json) / 4, (_CountingSHA256.hashed, len(data_json))


def test_incremental_builds_are_byte_for_byte_a_build_from_scratch(admin_user):
    dev = environment("dev", by=admin_user)
    agents = [AgentKeyFactory(agent=AgentFactory(name=f"bot-{i:04d}", environments=["dev"])).agent for i in range(300)]
    _publish(dev, admin_user)
    # Agents after which a run ends: removing one merges two runs, adding a name right
    # after one starts the next run with it.
    cuts = [agent for agent in agents[1:-1] if packing.cuts_after(agent.name, every=registry.CHUNK_AGENTS)]
    assert len(cuts) >= 6
    leaving, before_joining = cuts[1], cuts[-2]  # in runs far apart: each change rebuilds its own
    # A suspension, an agent leaving, one joining, a key revoked and one added, in turn.
    identity_services.suspend_agent(agents[150], by=admin_user, reason="leaked key")
    identity_services.update_agent(leaving, by=admin_user, environments=["prod"])
    joining = AgentKeyFactory(agent=AgentFactory(name=before_joining.name + "a", environments=["dev"])).agent
    AgentKey.objects.filter(agent=agents[299]).update(revoked_at="2026-01-01T00:00:00Z")
    AgentKeyFactory(agent=agents[75])
    services.refresh_all_environments(reason="test")
    dev.refresh_from_db()
    part = BundlePart.objects.get(bundle=dev.active_bundle, kind=BundlePart.Kind.REGISTRY)
    data = archive.read_tar_gz(bytes(part.archive))["data.json"]
    assert data == canonical_json({"warden_registry": registry_data(dev)})
    assert f'"{leaving.name}"'.encode() not in data and f'"{joining.name}"'.encode() in data
    scratch = _from_scratch(part, dev)
    assert scratch.archive == bytes(part.archive)
    assert scratch.etag == part.etag


def test_the_last_encode_names_the_entries_it_changed(admin_user):
    dev = environment("dev", by=admin_user)
    AgentFactory.create_batch(50, environments=["dev"])
    victim = AgentFactory(name="bot-victim", environments=["dev"])
    _publish(dev, admin_user)
    identity_services.suspend_agent(victim, by=admin_user, reason="leaked key")
    changes = registry.agents_json.last_changes("dev")
    assert list(changes.agents) == ["bot-victim"] and changes.keys == {}
    old, new = changes.agents["bot-victim"]
    assert b'"status":"active"' in old and b'"status":"suspended"' in new


def test_archives_are_written_as_given_and_the_policy_part_is_copied(admin_user):
    dev = environment("dev", by=admin_user)
    victim = AgentFactory(name="bot-victim", environments=["dev"])
    first = _publish(dev, admin_user)
    policy = BundlePart.objects.get(bundle=first, kind=BundlePart.Kind.POLICY)
    identity_services.suspend_agent(victim, by=admin_user, reason="leaked key")
    active = Bundle.objects.get(pk=Environment.objects.get(pk=dev.pk).active_bundle_id)
    assert active.pk != first.pk and len(bytes(active.archive)) == active.size
    key = active_signing_key()
    verify_bundle(bytes(active.archive), public_key_pem=key.public_key_pem, keyid=key.kid)
    copied = BundlePart.objects.get(bundle=active, kind=BundlePart.Kind.POLICY)
    assert bytes(copied.archive) == bytes(policy.archive) and copied.etag == policy.etag


def test_a_registry_part_records_what_changed_since_the_part_before_it(admin_user):
    dev = environment("dev", by=admin_user)
    AgentFactory.create_batch(40, environments=["dev"])
    victim = AgentFactory(name="bot-victim", environments=["dev"])
    first = _publish(dev, admin_user)
    before = BundlePart.objects.get(bundle=first, kind=BundlePart.Kind.REGISTRY)
    identity_services.suspend_agent(victim, by=admin_user, reason="leaked key")
    active = Environment.objects.get(pk=dev.pk).active_bundle
    part = BundlePart.objects.get(bundle=active, kind=BundlePart.Kind.REGISTRY)
    assert part.previous_etag == before.etag
    assert set(part.changes) == {"agents", "keys", "rest"} and part.changes["keys"] == {}
    assert list(part.changes["agents"]) == ["bot-victim"] and part.changes["rest"] is False
    facts = json.loads(part.changes["agents"]["bot-victim"])
    assert (
        facts
        == json.loads(archive.read_tar_gz(bytes(part.archive))["data.json"])["warden_registry"]["agents"]["bot-victim"]
        and facts["status"] == "suspended"
    )
    # An encode of every agent (its cache evicted) cannot tell what changed: nothing is recorded.
    registry.agents_json.clear()
    identity_services.resume_agent(victim, by=admin_user, reason="rotated")
    resumed = BundlePart.objects.get(
        bundle=Environment.objects.get(pk=dev.pk).active_bundle, kind=BundlePart.Kind.REGISTRY
    )
    assert resumed.changes is None and resumed.previous_etag == ""
