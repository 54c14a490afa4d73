"""The signed audit head in every bundle's data: engines and verifiers outside the database learn
how far the log went, verify the head with the checkpoint public key alone, and see a rollback."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from datetime import timedelta

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agents_sdk.records import canonical_json
from controlplane.audit import checkpoints, heads
from controlplane.audit.models import Checkpoint, CheckpointKey
from controlplane.bundles.selectors import registry_data
from tests.audit.conftest import sign_session
from tests.bundles.factories import EnvironmentFactory, built_bundle

pytestmark = pytest.mark.django_db


def verifies(head: dict) -> bool:
    """What an engine does with the pinned checkpoint key: the signature over the statement."""
    body = canonical_json(head["statement"])
    key = CheckpointKey.objects.get(key_id=head["statement"]["key_id"])
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key)).verify(base64.b64decode(head["signature"]), body)
    except InvalidSignature:
        return False
    return hashlib.sha256(body).hexdigest() == head["statement_hash"]


def bundle_data(bundle) -> dict:
    with tarfile.open(fileobj=io.BytesIO(bytes(bundle.archive)), mode="r:gz") as archive:
        member = next(m for m in archive.getmembers() if m.name.lstrip("/").endswith("data.json"))
        return json.loads(archive.extractfile(member).read())


def test_bundles_carry_the_newest_signed_head_that_verifies_with_the_key_alone(ship, signer, settings):
    settings.WARDEN_AUDIT_BUNDLE_HEAD_SECONDS = 0
    environment = EnvironmentFactory(name="prod")
    assert "audit_head" not in registry_data(environment)  # no checkpoint yet: bundles as before
    ship(sign_session(signer, "s1"))
    checkpoints.create_checkpoints()
    ship(sign_session(signer, "s2"))
    checkpoints.create_checkpoints()
    newest = Checkpoint.objects.order_by("-sequence").first()

    head = registry_data(environment)["audit_head"]
    assert head["sequence"] == newest.sequence == 2 and head["last_event_id"] == newest.last_event_id
    assert head["statement"]["previous"] == Checkpoint.objects.get(sequence=1).statement_hash
    assert verifies(head)
    # In the signed bundle engines download, under data.warden_registry.
    assert bundle_data(built_bundle(environment))["warden_registry"]["audit_head"] == head

    # Hostile shapes: a head whose numbers were moved, or signed over another statement, fails.
    for forged in (
        {**head, "statement": {**head["statement"], "last_event_id": head["last_event_id"] + 100}},
        {**head, "statement": {**head["statement"], "sequence": 1}},
        {**head, "signature": base64.b64encode(b"\0" * 64).decode()},
        {**head, "statement_hash": "0" * 64},
    ):
        assert not verifies(forged)


def test_the_head_moves_at_most_once_per_period_so_checkpoints_do_not_rebuild_every_bundle(ship, signer, settings):
    settings.WARDEN_AUDIT_BUNDLE_HEAD_SECONDS = 3600
    ship(sign_session(signer, "s1"))
    checkpoints.create_checkpoints()
    first = Checkpoint.objects.get()
    start_of_next_hour = first.created_at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    # Within the hour it was made, bundles keep the earlier head (here: none).
    assert heads.bundle_head(now=start_of_next_hour - timedelta(seconds=1)) is None
    assert heads.bundle_head(now=start_of_next_hour)["sequence"] == 1
    ship(sign_session(signer, "s2"))
    checkpoints.create_checkpoints()
    second = Checkpoint.objects.get(sequence=2)
    if second.created_at < start_of_next_hour:  # the same period (not across an hour's boundary)
        assert heads.bundle_head(now=start_of_next_hour - timedelta(seconds=1)) is None  # data unchanged: no rebuild
    later = max(second.created_at, start_of_next_hour).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert heads.bundle_head(now=later)["sequence"] == 2
