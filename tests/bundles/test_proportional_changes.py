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
    compressed: list[bytes] = []
    real_compress = gzip.compress

    def spy(data, *args, **kwargs):
        compressed.append(bytes(data))
        return real_compress(data, *args, **kwargs)

    monkeypatch.setattr(packing.gzip, "compress", spy)
    identity_services.suspend_agent(victim, by=admin_user, reason="leaked key")
    active = Environment.objects.get(pk=dev.pk).active_bundle
    assert active.pk != published.pk
    registry_part = BundlePart.objects.get(bundle=active, kind=BundlePart.Kind.REGISTRY)
    data_json = canonical_json(_data(registry_part.archive))
    assert len(data_json) > 100_000
    # Two archives (the combined bundle and the registry part) were rebuilt; they compressed
    # the run holding the victim and the run after it (runs end at content-defined keys, so
    # their sizes vary) and runs too small to cache, never an agent of another cached run.
    agents = registry.agents_json._environment("dev").agents
    at = agents._index(victim.name)
    cached_elsewhere = [name for index, (run, run_keys) in enumerate(zip(agents.runs, agents._keys, strict=True))
                        if len(run) >= packing.CACHED_RUN_BYTES and index not in (at, at + 1) for name in run_keys]
    assert len(cached_elsewhere) > 900
    recompressed = [name for name in cached_elsewhere if any(b'"%s"' % name.encode() in data for data in compressed)]
    assert recompressed == []
    assert sum(map(len, compressed)) < len(data_json) / 2
    # Still a bundle OPA verifies and reads (several gzip members, one tar).
    key = active_signing_key()
    for blob in (bytes(active.archive), bytes(registry_part.archive)):
        verified = verify_bundle(blob, public_key_pem=key.public_key_pem, keyid=key.kid)
        assert verified.data["warden_registry"]["agents"]["zz-victim-bot"]["status"] == "suspended"


def test_packed_archives_hold_exactly_the_tar_tarfile_writes():
    files = {
        ".manifest": b'{"revision":"r"}',
        "warden/a.rego": b"package warden.a\n" + b"# padding\n" * 400,
        "data.json": packing.Pieces([b'{"warden_registry":{"agents":{', packing.Run(b'"a":1' + b" " * 3000), b',"b":2',
                                     b"}}}"]),
    }
    packed = archive.pack_tar_gz(files)
    assert gzip.decompress(packed) == archive._pack_tar(files)
    assert archive.pack_tar_gz(files) == packed  # deterministic
    assert archive.read_tar_gz(packed) == {name: bytes(content) for name, content in files.items()}


def _fragment(key: str, value: int) -> bytes:
    return canonical_json(key) + b":" + canonical_json(value)


def test_a_changed_entry_rebuilds_one_run_and_matches_a_fresh_encoding():
    import random

    rng = random.Random(20)
    every = 8  # a cut after one key in 8: merges and splits of runs are frequent
    entries = {f"agent-{i:05d}": _fragment(f"agent-{i:05d}", 0) for i in range(0, 1200, 2)}
    runs = packing.RunList(every=every)
    runs.update(dict(entries))
    assert len(runs.runs) > 30
    for _ in range(400):  # changes, additions and removals, one or a few at a time
        changes: dict[str, bytes | None] = {}
        for _ in range(rng.choice([1, 1, 3])):
            key = f"agent-{rng.randrange(1250):05d}"
            changes[key] = None if rng.random() < 0.4 else _fragment(key, rng.randrange(5))
        before = list(runs.runs)
        changed = runs.update(changes)
        for key, fragment in changes.items():
            if fragment is None:
                entries.pop(key, None)
            else:
                entries[key] = fragment
        fresh = packing.RunList(every=every)
        fresh.update(dict(entries))
        assert b"".join(runs.pieces) == b"{" + b",".join(entries[key] for key in sorted(entries)) + b"}"
        assert runs.runs == fresh.runs  # the same runs as an encoding from scratch
        assert set(changed) <= set(changes)
        if len(changes) == 1:
            assert sum(1 for run in runs.runs if not any(run is old for old in before)) <= 2
