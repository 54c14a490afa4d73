"""One registry change costs work proportional to what changed (issue #20): a kill switch
refreshes only the environments the agent runs in, and the archives compress only the runs
of bytes that changed (controlplane/bundles/packing.py), while staying bundles every reader
takes (multi-member gzip, verified as OPA verifies it)."""

from __future__ import annotations

import gzip
import json

import pytest

from agents_sdk.bundles.format import canonical_json
from controlplane.bundles import archive, packing, registry, services
from controlplane.bundles.models import BundlePart, Environment
from controlplane.bundles.signing import active_signing_key
from controlplane.changelog.models import ChangeAction
from controlplane.identity import services as identity_services
from tests.bundles.factories import environment
from tests.identity.factories import AgentFactory
from tests.opa.opa_client import verify_bundle

pytestmark = pytest.mark.django_db

POLICIES = {"warden/killswitch.rego": (
    "package warden.killswitch\n\n"
    "default active := false\n\n"
    "active if data.warden_registry.agents[input.agent.name].status == \"active\"\n"
)}


def _publish(env, by):
    return services.activate_bundle(
        env, services.build_bundle(env, policy_files=POLICIES, by=by, reason="test"), by=by,
        action=ChangeAction.ACTIVATE,
    )


def _data(blob) -> dict:
    return json.loads(archive.read_tar_gz(bytes(blob))["data.json"])


def test_a_kill_switch_refreshes_only_the_environments_the_agent_runs_in(admin_user, monkeypatch):
    dev, prod = environment("dev", by=admin_user), environment("prod", by=admin_user)
    agent = AgentFactory(name="dev-only-bot", environments=["dev"])
    AgentFactory(name="prod-bot", environments=["prod"])
    _publish(dev, admin_user)
    prod_bundle = _publish(prod, admin_user)
    refreshed = []
    real_refresh = services.refresh_registry_data

    def spy(environment, **kwargs):
        refreshed.append(environment.name)
        return real_refresh(environment, **kwargs)

    monkeypatch.setattr(services, "refresh_registry_data", spy)
    identity_services.suspend_agent(agent, by=admin_user, reason="leaked key")
    assert refreshed == ["dev"], "a suspension in dev must not rebuild prod's registry"
    assert Environment.objects.get(pk=prod.pk).active_bundle_id == prod_bundle.pk
    dev_data = _data(Environment.objects.get(pk=dev.pk).active_bundle.archive)
    assert dev_data["warden_registry"]["agents"]["dev-only-bot"]["status"] == "suspended"


def test_a_suspension_compresses_one_run_of_a_large_registry(admin_user, monkeypatch):
    monkeypatch.setattr(registry, "CHUNK_AGENTS", 32)  # runs of ~6 KB: many runs at 1,200 agents
    registry.agents_json.clear()
    dev = environment("dev", by=admin_user)
    AgentFactory.create_batch(1200, environments=["dev"])
    victim = AgentFactory(name="zz-victim-bot", environments=["dev"])
    published = _publish(dev, admin_user)
    compressed: list[int] = []
    real_compress = gzip.compress

    def spy(data, *args, **kwargs):
        compressed.append(len(data))
        return real_compress(data, *args, **kwargs)

    monkeypatch.setattr(packing.gzip, "compress", spy)
    identity_services.suspend_agent(victim, by=admin_user, reason="leaked key")
    active = Environment.objects.get(pk=dev.pk).active_bundle
    assert active.pk != published.pk
    registry_part = BundlePart.objects.get(bundle=active, kind=BundlePart.Kind.REGISTRY)
    data_json = canonical_json(_data(registry_part.archive))
    assert len(data_json) > 100_000
    # Two archives (the combined bundle and the registry part) were rebuilt; together they
    # compressed a small fraction of the registry: the changed run and the small ones.
    assert sum(compressed) < len(data_json) / 4, (compressed, len(data_json))
    # Still a bundle OPA verifies and reads (several gzip members, one tar).
    key = active_signing_key()
    for blob in (bytes(active.archive), bytes(registry_part.archive)):
        verified = verify_bundle(blob, public_key_pem=key.public_key_pem, keyid=key.kid)
        assert verified.data["warden_registry"]["agents"]["zz-victim-bot"]["status"] == "suspended"


def test_packed_archives_hold_exactly_the_tar_tarfile_writes():
    files = {
        ".manifest": b'{"revision":"r"}',
        "warden/a.rego": b"package warden.a\n" + b"# padding\n" * 400,
        "data.json": packing.Chunked([b'{"warden_registry":{"agents":{', b'"a":1' + b" " * 3000, b',"b":2', b"}}}"]),
    }
    packed = archive.pack_tar_gz(files)
    assert gzip.decompress(packed) == archive._pack_tar(files)
    assert archive.pack_tar_gz(files) == packed  # deterministic
    assert archive.read_tar_gz(packed) == {name: bytes(content) for name, content in files.items()}


def test_an_added_entry_changes_one_run():
    entries = [(f"agent-{i:05d}", canonical_json(f"agent-{i:05d}") + b":{}") for i in range(3000)]
    before = list(packing.chunks_of(entries, every=64))
    after = list(packing.chunks_of(sorted([*entries, ("agent-01500x", b'"agent-01500x":{}')]), every=64))
    assert b"{" + b"".join(after) + b"}" == b"{" + b",".join(fragment for _, fragment in sorted(
        [*entries, ("agent-01500x", b'"agent-01500x":{}')])) + b"}"
    assert len(before) > 10
    assert len(set(after) - set(before)) == 1
