"""A snapshot is served as its stored gzip members, one after the other, never joined into
one copy (controlplane/opa/asgi.py, controlplane/opa/bundle_service.py): the body an engine
receives is byte for byte the stored archive, with its length announced up front."""

from __future__ import annotations

import pytest

from controlplane.bundles import registry, storage
from controlplane.bundles import services as bundle_services
from controlplane.bundles.models import Bundle, BundlePart
from controlplane.identity import services as identity_services
from controlplane.opa import selectors
from tests.identity.factories import AgentFactory
from tests.opa.opa_client import verify_bundle
from tests.opa.sidecar import DJANGO_ONLY, FAST_PATH, EmulatedOPA, asgi_client, run

pytestmark = pytest.mark.usefixtures("opa_db")


@pytest.fixture
def crowded_dev(dev, agent, monkeypatch):
    """dev with 200 more agents, its data.json in many runs, each a gzip member of its own."""
    monkeypatch.setattr(registry, "CHUNK_AGENTS", 16)
    registry.agents_json.clear()
    AgentFactory.create_batch(200, environments=["dev"])
    bundle_services.refresh_all_environments(reason="200 agents join dev")
    dev.refresh_from_db()
    return dev


async def _raw_get(token: str, path: str) -> list[dict]:
    """The ASGI messages the fast path sends for one GET."""
    sent: list[dict] = []
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "query_string": b"",
             "headers": [(b"authorization", f"Bearer {token}".encode())]}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await FAST_PATH(scope, receive, send)
    return sent


def _stored(model, pk) -> tuple[bytes, int]:
    members = bytes(model.objects.values_list("members", flat=True).get(pk=pk))
    return storage.read_archive(members), len(members) // storage.DIGEST_BYTES


@pytest.mark.parametrize("part", ["", "registry"])
def test_the_fast_path_writes_a_snapshot_member_by_member_byte_identical_to_the_stored_one(crowded_dev, dev_token,
                                                                                            part, signing_key):
    bundle = crowded_dev.active_bundle
    row = BundlePart.objects.get(bundle=bundle, kind=part) if part else bundle
    stored, members = _stored(type(row), row.pk)
    start, *bodies = run(_raw_get(dev_token, "/opa/bundles/dev" + (f"/{part}" if part else "")))
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"etag"].decode() == row.etag
    assert int(headers[b"content-length"]) == len(stored) == row.size
    assert len(bodies) == members > 1, "one body message per stored member, not one joined copy"
    assert [body["more_body"] for body in bodies] == [True] * (members - 1) + [False]
    served = b"".join(body["body"] for body in bodies)
    assert served == stored
    verify_bundle(served, public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)


def test_the_django_view_streams_the_same_bytes_with_their_length(dev, dev_token, signing_key):
    stored, _ = _stored(Bundle, dev.active_bundle.pk)

    async def download():
        async with asgi_client(DJANGO_ONLY) as client:
            return await EmulatedOPA(client, token=dev_token, resource="bundles/dev").download()

    response = run(download())
    assert response.status_code == 200
    assert response.content == stored
    assert int(response.headers["Content-Length"]) == len(stored)
    assert response.headers["ETag"] == dev.active_bundle.etag


def test_after_a_registry_change_the_new_snapshot_shares_the_members_the_process_holds(crowded_dev, agent, admin):
    dev = crowded_dev
    part = BundlePart.objects.get(bundle=dev.active_bundle, kind=BundlePart.Kind.REGISTRY)
    before = selectors.bundle_members(f"part:{part.pk}", part.etag)
    identity_services.suspend_agent(agent, by=admin, reason="kill switch")
    dev.refresh_from_db()
    new = BundlePart.objects.get(bundle=dev.active_bundle, kind=BundlePart.Kind.REGISTRY)
    after = selectors.bundle_members(f"part:{new.pk}", new.etag)
    assert b"".join(after) == storage.read_archive(bytes(new.members)) != b"".join(before)
    held = {id(chunk) for chunk in before}
    shared = [chunk for chunk in after if id(chunk) in held]
    # Unchanged runs of data.json are the very objects already cached, not copies read again.
    assert len(shared) > len(after) / 2, (len(shared), len(after))
