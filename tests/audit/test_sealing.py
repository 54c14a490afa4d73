"""The worker's batch sealer makes exactly the tokens `Fernet.encrypt` makes (one cipher
context per batch instead of one per record), and the worker verifies a batch with the
cyclic garbage collector paused, restoring it afterwards."""

from __future__ import annotations

import gc
import itertools

import pytest
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.test import APIClient

from controlplane.audit import records, sealing, verification
from controlplane.audit.models import AuditEvent
from tests.audit.conftest import route_verifications, sign_session, upload

KEY = Fernet.generate_key()
# Lengths around the 16-byte block: the padding and the first block's chaining both differ.
EDGE_LENGTHS = [0, 1, 15, 16, 17, 31, 32, 33, 4096, 4111]


def fixed_parts(monkeypatch, moment: int = 1_700_000_000) -> list[bytes]:
    """Make the sealer's IVs and time known: what it drew, in order (each draw 16-byte pieces)."""
    counter = itertools.count(1)
    drawn: list[bytes] = []

    def urandom(n: int) -> bytes:
        value = b"".join(next(counter).to_bytes(16, "big") for _ in range(n // 16))  # 16-byte pieces, all distinct
        drawn.append(value)
        return value

    monkeypatch.setattr(sealing, "urandom", urandom)
    monkeypatch.setattr(sealing, "time", lambda: moment + 0.75)
    return drawn


def test_each_token_is_the_one_fernet_makes_with_the_same_iv_and_time(monkeypatch):
    drawn = fixed_parts(monkeypatch)
    fernet = Fernet(KEY)
    sealer = sealing.BatchSealer(MultiFernet([fernet, Fernet(Fernet.generate_key())]))
    assert sealer.fast
    messages = [bytes((i % 251,)) * n for i, n in enumerate(EDGE_LENGTHS * 2)]
    tokens = [sealer.seal(message) for message in messages]
    # The first draw is the context's own IV, never in a token; then one draw of IVs for many tokens.
    assert len(drawn) == 2 and len(drawn[1]) == 16 * sealing.IVS_PER_DRAW
    ivs = [drawn[1][i:i + 16] for i in range(0, 16 * len(messages), 16)]
    for message, token, iv in zip(messages, tokens, ivs, strict=True):
        assert token == fernet._encrypt_from_parts(message, 1_700_000_000, iv)
        assert fernet.decrypt(token) == message


def test_tokens_past_one_draw_of_ivs_take_fresh_ivs_each_and_match_fernets(monkeypatch):
    drawn = fixed_parts(monkeypatch)
    fernet = Fernet(KEY)
    sealer = sealing.BatchSealer(fernet)
    count = 2 * sealing.IVS_PER_DRAW + 3  # across two refills
    tokens = [sealer.seal(b"record %d" % i) for i in range(count)]
    ivs = [pool[i:i + 16] for pool in drawn[1:] for i in range(0, len(pool), 16)]
    assert len(drawn) == 4 and len(set(ivs)) == len(ivs)  # three draws of IVs, none repeated
    for i, token in enumerate(tokens):
        assert token == fernet._encrypt_from_parts(b"record %d" % i, 1_700_000_000, ivs[i])
        assert fernet.decrypt(token) == b"record %d" % i


@given(messages=st.lists(st.binary(max_size=300), min_size=1, max_size=12))
def test_any_messages_in_any_order_unseal_to_themselves(messages):
    sealer = sealing.BatchSealer(MultiFernet([Fernet(KEY)]))
    tokens = [sealer.seal(message) for message in messages]
    assert [Fernet(KEY).decrypt(token) for token in tokens] == messages


def test_the_same_record_twice_gets_two_ivs_and_two_ciphertexts():
    sealer = sealing.BatchSealer(Fernet(KEY))
    first, second = sealer.seal(b"a record" * 10), sealer.seal(b"a record" * 10)
    assert first != second
    assert Fernet(KEY).decrypt(first) == Fernet(KEY).decrypt(second) == b"a record" * 10


def test_a_token_sealed_with_another_key_or_altered_is_refused():
    token = sealing.BatchSealer(Fernet(KEY)).seal(b"original")
    with pytest.raises(InvalidToken):
        Fernet(Fernet.generate_key()).decrypt(token)
    altered = bytearray(token)
    altered[40] = ord("A") if altered[40] != ord("A") else ord("B")
    with pytest.raises(InvalidToken):
        Fernet(KEY).decrypt(bytes(altered))


def test_the_control_planes_key_takes_the_fast_path_and_its_tokens_unseal():
    # A `cryptography` that keeps Fernet's keys elsewhere must fail here, not slow down unseen.
    sealer = sealing.BatchSealer(records.sealer())
    assert sealer.fast
    assert records.unseal(sealer.seal(b'{"a":1}')) == b'{"a":1}'


def test_without_reachable_keys_each_token_is_made_by_fernet_itself():
    class Opaque:
        def __init__(self):
            self.inner = Fernet(KEY)

        def encrypt(self, data: bytes) -> bytes:
            return self.inner.encrypt(data)

    sealer = sealing.BatchSealer(Opaque())  # type: ignore[arg-type]
    assert not sealer.fast
    assert Fernet(KEY).decrypt(sealer.seal(b"slow path")) == b"slow path"


# -- the collector paused while a batch is verified -------------------------------------


@pytest.mark.parametrize("enabled", [True, False])
def test_a_batch_is_checked_and_stored_with_the_collector_off_and_its_state_is_restored(identity, signer, monkeypatch,
                                                                             enabled):
    route_verifications(monkeypatch, lambda batch_id: None)
    batch_id = upload(APIClient(), identity, sign_session(signer, "gc")).json()["batch_id"]
    seen = []
    check, store = verification._check_records, verification._store
    monkeypatch.setattr(verification, "_check_records", lambda batch: seen.append(gc.isenabled()) or check(batch))
    monkeypatch.setattr(verification, "_store", lambda *args: seen.append(gc.isenabled()) or store(*args))
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        outcome = verification.verify_batch(batch_id)
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
    assert seen == [False, False]  # checked, then stored, each with the collector off
    assert outcome.events == 4 and AuditEvent.objects.filter(batch_id=batch_id).count() == 4


def test_the_collector_is_restored_when_verification_fails(identity, signer, monkeypatch):
    route_verifications(monkeypatch, lambda batch_id: None)
    batch_id = upload(APIClient(), identity, sign_session(signer, "gc-fail")).json()["batch_id"]

    def broken(batch):
        raise RuntimeError("worker bug")

    monkeypatch.setattr(verification, "_check_records", broken)
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        verification.verify_batch(batch_id)
    assert gc.isenabled()
