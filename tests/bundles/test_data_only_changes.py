"""A data-only change (a suspension) rebuilds the registry part only: the policies are not
compiled again and the policy part is not rebuilt, so engines on the split layout keep
their policy bundle byte for byte (issue #20)."""

import pytest

from controlplane.bundles import archive, services
from controlplane.bundles.models import BundlePart, Environment
from controlplane.changelog.models import ChangeAction
from controlplane.identity import services as identity_services
from tests.bundles.factories import environment
from tests.identity.factories import AgentFactory

pytestmark = pytest.mark.django_db

# A small policy set keeps the test fast; what it shows does not depend on the policies.
POLICIES = {"warden/killswitch.rego": (
    "package warden.killswitch\n\n"
    "default active := false\n\n"
    "active if data.warden_registry.agents[input.agent.name].status == \"active\"\n"
)}


def _part(bundle, kind) -> BundlePart:
    return BundlePart.objects.get(bundle=bundle, kind=kind)


def test_a_suspension_compiles_nothing_and_rebuilds_only_the_registry_part(admin_user, monkeypatch):
    dev = environment("dev", by=admin_user)
    agent = AgentFactory(name="data-only-bot", environments=["dev"])
    published = services.activate_bundle(  # compiles the policy set once
        dev, services.build_bundle(dev, policy_files=POLICIES, by=admin_user, reason="test"),
        by=admin_user, action=ChangeAction.ACTIVATE,
    )
    policy_before = _part(published, BundlePart.Kind.POLICY)
    registry_before = _part(published, BundlePart.Kind.REGISTRY)

    compiled, built = [], []
    real_build = archive.build_archive
    monkeypatch.setattr(services, "compile_modules", lambda *a, **k: compiled.append(a))

    def spy(**kwargs):
        built.append(("policy" if kwargs["data"] is None else "data", kwargs["roots"]))
        return real_build(**kwargs)

    monkeypatch.setattr(archive, "build_archive", spy)
    # The kill switch rebuilds synchronously (its 200 means delivered); the wake-up is on commit.
    identity_services.suspend_agent(agent, by=admin_user, reason="leaked key")

    active = Environment.objects.get(pk=dev.pk).active_bundle
    assert active.pk != published.pk, "the suspension must activate a new bundle"
    assert compiled == [], "a data-only change must not compile the policies again"
    assert [kind for kind, _ in built].count("policy") == 0, f"a policy-only archive was built: {built}"
    policy_after = _part(active, BundlePart.Kind.POLICY)
    assert policy_after.etag == policy_before.etag
    assert bytes(policy_after.archive) == bytes(policy_before.archive)
    registry_after = _part(active, BundlePart.Kind.REGISTRY)
    assert registry_after.etag != registry_before.etag
    assert registry_after.manifest["roots"] == ["warden_registry"]
