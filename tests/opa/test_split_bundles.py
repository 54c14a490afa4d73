"""The split bundle layout (docs/opa.md, "Bundle layout"): bundles/<env>/policy and
bundles/<env>/registry, verified as OPA verifies them, with disjoint roots, and the
registry alone changing when an agent is suspended."""

import asyncio

import pytest
from django.test import override_settings

from controlplane.bundles import services as bundle_services
from controlplane.bundles.models import BundlePart
from controlplane.identity import services as identity_services
from controlplane.opa import services as opa_services
from controlplane.opa.discovery import opa_config
from controlplane.opa.selectors import forget_cached_bundles
from tests.opa.opa_client import verify_bundle
from tests.opa.sidecar import DJANGO_ONLY, FAST_PATH, EmulatedOPA, asgi_client, in_thread, run


@pytest.fixture(params=[FAST_PATH, DJANGO_ONLY], ids=["fast-path", "django-view"])
def app(request):
    return request.param


def _overlap(a: str, b: str) -> bool:
    x, y = a.split("/"), b.split("/")
    return x[: min(len(x), len(y))] == y[: min(len(x), len(y))]


async def _download(token, resource, *, etag="", app=FAST_PATH):
    async with asgi_client(app) as client:
        opa = EmulatedOPA(client, token=token, resource=resource)
        opa.etag = etag
        return await opa.download()


def test_parts_verify_as_opa_does_with_disjoint_roots_and_merge_to_the_combined_bundle(dev, dev_token, signing_key, app):
    combined = verify_bundle(run(_download(dev_token, "bundles/dev", app=app)).content,
                             public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)
    policy_response = run(_download(dev_token, "bundles/dev/policy", app=app))
    registry_response = run(_download(dev_token, "bundles/dev/registry", app=app))
    assert policy_response.status_code == registry_response.status_code == 200
    policy = verify_bundle(policy_response.content, public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)
    registry = verify_bundle(registry_response.content, public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)
    assert "data.json" not in policy.files, "the policy bundle carries no data: it must not own warden_registry"
    assert set(registry.files) == {"data.json", ".manifest"}  # plus .signatures.json, verified
    assert registry.manifest["roots"] == ["warden_registry"]
    for root in policy.manifest["roots"]:
        assert not any(_overlap(root, other) for other in registry.manifest["roots"]), root
    # Together they are exactly the combined bundle: same modules, same data.
    rego = {name: body for name, body in combined.files.items() if name.endswith(".rego")}
    assert {name: body for name, body in policy.files.items() if name.endswith(".rego")} == rego
    assert registry.data == combined.data
    assert registry.manifest["metadata"]["kind"] == "registry"
    assert registry.manifest["metadata"]["warden"]["built_at"] == combined.manifest["metadata"]["warden"]["built_at"]


def test_a_suspension_changes_the_registry_part_only(dev, dev_token, agent, admin, signing_key):
    policy_before = run(_download(dev_token, "bundles/dev/policy"))
    registry_before = run(_download(dev_token, "bundles/dev/registry"))
    identity_services.suspend_agent(agent, by=admin, reason="leaked key")
    forget_cached_bundles()  # a plain poll may see the previous ETag for up to ACTIVE_BUNDLE_TTL
    # The policy bundle's ETag is unchanged: OPA's conditional GET is answered 304.
    assert run(_download(dev_token, "bundles/dev/policy", etag=policy_before.headers["ETag"])).status_code == 304
    after = run(_download(dev_token, "bundles/dev/registry", etag=registry_before.headers["ETag"]))
    assert after.status_code == 200
    verified = verify_bundle(after.content, public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)
    assert verified.data["warden_registry"]["agents"]["billing-bot"]["status"] == "suspended"
    assert len(after.content) < len(run(_download(dev_token, "bundles/dev")).content)


def test_a_held_registry_poll_is_answered_by_the_suspension_and_the_policy_poll_is_not(
    dev, dev_token, agent, admin, signing_key,
):
    async def scenario():
        async with asgi_client(FAST_PATH) as client:
            registry = EmulatedOPA(client, token=dev_token, resource="bundles/dev/registry")
            policy = EmulatedOPA(client, token=dev_token, resource="bundles/dev/policy")
            await registry.download()
            await policy.download()
            registry_poll = asyncio.create_task(registry.download(wait=3))
            policy_poll = asyncio.create_task(policy.download(wait=3))
            await asyncio.sleep(0.5)
            assert not registry_poll.done() and not policy_poll.done()
            await in_thread(identity_services.suspend_agent, agent, by=admin, reason="kill switch")
            registry_answer = await asyncio.wait_for(registry_poll, 10)
            assert not policy_poll.done(), "a registry change must not answer the policy bundle's long poll"
            policy_answer = await asyncio.wait_for(policy_poll, 10)
            return registry_answer, policy_answer

    registry_answer, policy_answer = run(scenario())
    assert registry_answer.status_code == 200
    assert registry_answer.headers["Content-Type"] == "application/vnd.openpolicyagent.bundles"
    assert policy_answer.status_code == 304


def test_unknown_part_and_foreign_token_are_refused(dev, dev_token, staging_token, app):
    assert run(_download(dev_token, "bundles/dev/secrets", app=DJANGO_ONLY)).status_code == 404
    assert run(_download(dev_token, "bundles/dev/..%2Fregistry", app=app)).status_code == 404
    assert run(_download(staging_token, "bundles/dev/registry", app=app)).status_code == 403


def test_a_bundle_activated_before_the_split_gets_its_parts_at_the_next_reconcile(dev, dev_token):
    BundlePart.objects.all().delete()
    assert run(_download(dev_token, "bundles/dev/registry")).status_code == 404
    assert bundle_services.refresh_all_environments(reason="reconcile") == []  # nothing changed...
    forget_cached_bundles()  # (the 404 above is remembered for up to ACTIVE_BUNDLE_TTL)
    assert run(_download(dev_token, "bundles/dev/registry")).status_code == 200  # ...but the parts exist


def test_discovery_configures_two_bundles_when_split(dev):
    with override_settings(WARDEN_OPA_SPLIT_BUNDLES=True):
        config = opa_config(dev, bundle_key_id="k1")
    assert set(config["bundles"]) == {"dev-policy", "dev-registry"}
    assert config["bundles"]["dev-registry"]["resource"] == "bundles/dev/registry"
    assert all(spec["signing"] == {"keyid": "k1"} and spec["persist"] for spec in config["bundles"].values())
    assert set(opa_config(dev, bundle_key_id="k1")["bundles"]) == {"dev"}


def test_status_of_a_split_engine_maps_to_the_combined_revision(dev):
    parts = {part.kind: part.revision for part in dev.active_bundle.parts.all()}
    report = {
        "labels": {"id": "opa-split-1", "version": "1.4.2"},
        "bundles": {
            "dev-policy": {"name": "dev-policy", "active_revision": parts["policy"]},
            "dev-registry": {"name": "dev-registry", "active_revision": parts["registry"]},
        },
    }
    instance = opa_services.record_status(dev, report)
    assert instance.active_revision == dev.active_bundle.revision
    report["bundles"]["dev-registry"]["active_revision"] = "0" * 64  # an older or forged registry
    assert opa_services.record_status(dev, report).active_revision == ""


def test_the_documented_split_configuration_is_what_discovery_hands_out(dev):
    import re
    from pathlib import Path

    import yaml

    text = Path(__file__).resolve().parents[2].joinpath("docs", "opa.md").read_text("utf-8")
    section = text.split("## Bundle layout", 1)[1]
    documented = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))["bundles"]
    with override_settings(WARDEN_OPA_SPLIT_BUNDLES=True):
        handed_out = opa_config(dev, bundle_key_id="warden-…")["bundles"]
    assert {name.replace("prod", "dev"): {**spec, "resource": spec["resource"].replace("prod", "dev")}
            for name, spec in documented.items()} == handed_out
