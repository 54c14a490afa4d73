"""Delta bundles for the registry part (docs/opa.md, "Delta bundles"): a poller holding a
recent registry snapshot that asks for deltas (`bundles/<env>/registry?delta=1`) gets the
change as OPA's `patch.json`, applied by the strict OPA-protocol client and by the SDK."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from agents_sdk.bundles import BundleClient, BundleVerificationError, VerificationConfig, VerificationKey, read_archive
from agents_sdk.bundles.delta import apply_delta as sdk_apply_delta
from agents_sdk.bundles.multi import BundleSet
from agents_sdk.guard.backends import EmbeddedBackend
from controlplane.bundles.models import BundlePart
from controlplane.identity import services as identity_services
from controlplane.opa import deltas
from controlplane.opa.selectors import forget_cached_bundles
from tests.opa.opa_client import apply_delta, read_delta, read_tar_entries, repack, verify_bundle
from tests.opa.sidecar import FAST_PATH, EmulatedOPA, asgi_client, run


def _documented_bundles() -> dict:
    """The stock-OPA configuration docs/opa.md gives under "Delta bundles"."""
    text = Path(__file__).resolve().parents[2].joinpath("docs", "opa.md").read_text("utf-8")
    section = text.split("### Delta bundles", 1)[1]
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))["bundles"]


# The documented resource, for environment dev.
REGISTRY = _documented_bundles()["prod-registry"]["resource"].replace("prod", "dev")


def test_the_documented_delta_configuration_asks_for_deltas_without_persisting_them():
    bundles = _documented_bundles()
    assert REGISTRY == "bundles/dev/registry?delta=1"
    assert bundles["prod-registry"]["persist"] is False  # OPA refuses deltas for a persisted bundle
    assert bundles["prod-policy"]["resource"] == "bundles/prod/policy"


class ASGIPool:
    """What BundleClient asks of urllib3's PoolManager, answered by the ASGI application
    in-process (the SDK's own request, verification and activation code runs unchanged).
    `tamper(body)` may rewrite a 200's body on its way to the client."""

    def __init__(self, tamper=None):
        self.tamper = tamper

    def request(self, method, url, headers=None, decode_content=False, timeout=None):
        path = "/" + url.split("://", 1)[1].split("/", 1)[1]

        async def call():
            async with asgi_client(FAST_PATH) as client:
                return await client.request(method, path, headers=headers)

        response = asyncio.run(call())
        body = response.content
        if response.status_code == 200 and self.tamper is not None:
            body = self.tamper(body)
        return SimpleNamespace(
            status=response.status_code, data=body, headers=response.headers, reason=response.reason_phrase
        )


def sdk_client(resource: str, token: str, signing_key, *, deltas_on: bool = True, tamper=None) -> BundleClient:
    verification = VerificationConfig(
        keys={signing_key.kid: VerificationKey.from_pem(signing_key.kid, signing_key.public_key_pem)},
        keyid=signing_key.kid,
    )
    client = BundleClient(
        "http://testserver/opa",
        resource,
        token=token,
        verification=verification,
        deltas=deltas_on,
        long_polling_timeout=5,
    )
    client._http = ASGIPool(tamper)
    return client


async def _download(token, resource, *, etag="", wait=None):
    async with asgi_client(FAST_PATH) as client:
        opa = EmulatedOPA(client, token=token, resource=resource)
        opa.etag = etag
        return await opa.download(wait=wait)


def _snapshot(token, signing_key, resource=REGISTRY):
    response = run(_download(token, resource))
    assert response.status_code == 200
    return response, verify_bundle(response.content, public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)


def _probe(agent) -> dict:
    return {
        "agent": {"id": agent.name, "name": agent.name, "owner": agent.owner_email, "scopes": list(agent.scopes)},
        "action": {"type": "tool_call", "tool": "ticket_read", "args": {"id": 7}},
        "context": {"session_id": "s-1", "environment": "dev", "time": "2026-01-01T00:00:00Z"},
    }


def _not_active(decision: dict) -> bool:
    return any(reason.get("rule") == "agent-not-active" for reason in decision.get("reasons", []))


def test_a_suspension_reaches_a_poller_holding_the_previous_snapshot_as_a_signed_delta(
    dev,
    dev_token,
    agent,
    admin,
    signing_key,
):
    before, snapshot = _snapshot(dev_token, signing_key)
    policy = sdk_client("bundles/dev/policy", dev_token, signing_key, deltas_on=False)
    registry = sdk_client("bundles/dev/registry", dev_token, signing_key)
    backend = EmbeddedBackend(BundleSet([policy, registry]), start=False)
    assert policy.poll_once() and registry.poll_once() and backend.wait_until_ready(1)
    assert not _not_active(backend.decide(_probe(agent))[0])

    # The SDK's long poll is held when the suspension happens.
    answered: list = []
    poll = threading.Thread(target=lambda: answered.append(registry.poll_once(wait=5)))
    poll.start()
    threading.Event().wait(0.5)
    identity_services.suspend_agent(agent, by=admin, reason="kill switch")
    forget_cached_bundles()
    poll.join(15)
    assert answered == [True]

    # The stock-OPA poller (long poll, holding the previous snapshot's ETag) gets a delta.
    response = run(_download(dev_token, REGISTRY, etag=before.headers["ETag"], wait=5))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/vnd.openpolicyagent.bundles"
    assert set(read_tar_entries(response.content)) == {"/.manifest", "/.signatures.json", "/patch.json"}
    delta = read_delta(response.content)
    assert delta is not None, "the answer must be a delta bundle"
    assert {op["path"].split("/")[3] for op in delta.operations} == {"billing-bot"}  # the suspended agent alone
    fresh_response, fresh = _snapshot(dev_token, signing_key)
    assert response.headers["ETag"] == fresh_response.headers["ETag"]  # the delta leads to the snapshot's state
    assert len(response.content) < len(fresh_response.content)
    assert delta.manifest == fresh.manifest
    assert apply_delta(snapshot.data, delta, roots=snapshot.manifest["roots"]) == fresh.data

    # The SDK applied the same delta: its data is the fresh snapshot's, and the engine denies.
    assert registry.active.delta and registry.status().as_opa()["type"] == "delta"
    assert registry.etag == fresh_response.headers["ETag"]
    assert registry.active.data == fresh.data
    assert backend.data["warden_registry"] == fresh.data["warden_registry"]
    assert _not_active(backend.decide(_probe(agent))[0])

    # The next change (a resume) is patched from the text the server indexed for the first.
    identity_services.resume_agent(agent, by=admin, reason="rotated")
    forget_cached_bundles()
    assert registry.poll_once(wait=5) and registry.active.delta
    again = run(_download(dev_token, REGISTRY, etag=response.headers["ETag"], wait=5))
    resumed = read_delta(again.content)
    _, fresh = _snapshot(dev_token, signing_key)
    assert resumed is not None
    assert (
        apply_delta(apply_delta(snapshot.data, delta, roots=["warden_registry"]), resumed, roots=["warden_registry"])
        == fresh.data
        == registry.active.data
    )
    assert not _not_active(backend.decide(_probe(agent))[0])


def test_a_poller_outside_the_window_or_not_asking_for_deltas_gets_a_snapshot(
    dev,
    dev_token,
    agent,
    admin,
    signing_key,
    monkeypatch,
):
    before, _ = _snapshot(dev_token, signing_key)
    identity_services.suspend_agent(agent, by=admin, reason="kill switch")
    forget_cached_bundles()
    # Stock OPA sends Prefer: modes=snapshot,delta on every long poll, but with persist: true
    # it cannot take a delta: without ?delta=1 the answer stays a snapshot.
    plain = run(_download(dev_token, "bundles/dev/registry", etag=before.headers["ETag"], wait=5))
    assert plain.status_code == 200 and read_delta(plain.content) is None
    verify_bundle(plain.content, public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)
    # An ETag the server does not know (or no longer keeps) gets the snapshot.
    unknown = run(_download(dev_token, REGISTRY, etag='"0123456789abcdef0123456789abcdef"', wait=5))
    assert unknown.status_code == 200 and read_delta(unknown.content) is None
    # Only the last DELTA_WINDOW registry revisions are patched from: with a window of one
    # (the active revision alone), the previous snapshot is outside it.
    monkeypatch.setattr(deltas, "DELTA_WINDOW", 1)
    deltas.forget_cached_deltas()
    outside = run(_download(dev_token, REGISTRY, etag=before.headers["ETag"], wait=5))
    assert outside.status_code == 200 and read_delta(outside.content) is None
    verified = verify_bundle(outside.content, public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)
    assert verified.data["warden_registry"]["agents"]["billing-bot"]["status"] == "suspended"
    # Back to the default window, the same poll is answered with a delta.
    monkeypatch.setattr(deltas, "DELTA_WINDOW", 32)
    deltas.forget_cached_deltas()
    inside = run(_download(dev_token, REGISTRY, etag=before.headers["ETag"], wait=5))
    recorded = read_delta(inside.content)
    assert recorded is not None
    # Without what the build recorded (another process built it), the server diffs the two
    # snapshots: the same change.
    BundlePart.objects.update(changes=None)
    deltas.forget_cached_deltas()
    diffed = read_delta(run(_download(dev_token, REGISTRY, etag=before.headers["ETag"], wait=5)).content)
    _, held = _snapshot(dev_token, signing_key, resource="bundles/dev/registry")
    old_data = verify_bundle(before.content, public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid).data
    roots = ["warden_registry"]
    assert diffed is not None
    assert apply_delta(old_data, recorded, roots=roots) == apply_delta(old_data, diffed, roots=roots) == held.data


def _tampered(body: bytes) -> bytes:
    entries = read_tar_entries(body)
    if "/patch.json" not in entries:
        return body
    patch = json.loads(entries["/patch.json"])
    for op in patch["data"]:
        if op["path"].endswith("/status"):
            op["value"] = "active"  # an attacker undoing the kill switch
    entries["/patch.json"] = json.dumps(patch).encode()
    return repack(entries)


def test_a_tampered_or_unsigned_delta_is_refused_and_the_previous_data_stays(dev, dev_token, agent, admin, signing_key):
    registry = sdk_client("bundles/dev/registry", dev_token, signing_key, tamper=_tampered)
    assert registry.poll_once()
    held = registry.active
    identity_services.suspend_agent(agent, by=admin, reason="kill switch")
    forget_cached_bundles()
    with pytest.raises(BundleVerificationError, match="patch.json: digest mismatch"):
        registry.poll_once(wait=5)
    assert registry.active is held and registry.etag == held.etag

    delta = run(_download(dev_token, REGISTRY, etag=held.etag, wait=5)).content
    files = read_archive(delta)
    unsigned = {name: content for name, content in files.items() if name != ".signatures.json"}
    with pytest.raises(BundleVerificationError, match="missing .signatures.json"):
        sdk_apply_delta(held, unsigned, delta, verification=registry.verification)
    # The genuine delta applies.
    assert (
        sdk_apply_delta(held, files, delta, verification=registry.verification).data["warden_registry"]["agents"][
            "billing-bot"
        ]["status"]
        == "suspended"
    )
