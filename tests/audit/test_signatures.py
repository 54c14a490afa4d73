"""The worker's Ed25519 check (libsodium first, OpenSSL on a refusal) gives exactly the
verdicts of the offline verifier, which uses OpenSSL: for good, altered and crafted
signatures alike."""

from __future__ import annotations

import base64
import hashlib
import os
import random

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents_sdk.records import signing_bytes
from agents_sdk.verify import verify_records
from controlplane.audit import signatures
from controlplane.audit.models import AuditEvent, QuarantinedRecord

ORDER = 2**252 + 27742317777372353535851937790883648493  # L, the order of the base point
IDENTITY_POINT = bytes([1]) + bytes(31)  # the encoding of the neutral element: a small-order R


def raw_public(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def small_order_signature(private: Ed25519PrivateKey, message: bytes) -> bytes:
    """A signature with R the neutral element: [S]B = R + [k]A holds (S = k·a), so OpenSSL
    accepts it; libsodium refuses any small-order R."""
    seed = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
    scalar = bytearray(hashlib.sha512(seed).digest()[:32])
    scalar[0] &= 248
    scalar[31] = (scalar[31] & 127) | 64
    a = int.from_bytes(scalar, "little")
    k = int.from_bytes(hashlib.sha512(IDENTITY_POINT + raw_public(private) + message).digest(), "little") % ORDER
    return IDENTITY_POINT + (k * a % ORDER).to_bytes(32, "little")


def openssl_accepts(private: Ed25519PrivateKey, signature: bytes, message: bytes) -> bool:
    try:
        private.public_key().verify(signature, message)
    except InvalidSignature:
        return False
    return True


def test_a_signature_libsodium_refuses_but_openssl_accepts_gets_openssls_verdict():
    private = Ed25519PrivateKey.generate()
    message = b'{"a":"record"}'
    crafted = small_order_signature(private, message)
    assert openssl_accepts(private, crafted, message)
    if signatures.SODIUM:
        from nacl.bindings import crypto_sign_open
        from nacl.exceptions import BadSignatureError

        with pytest.raises(BadSignatureError):
            crypto_sign_open(crafted + message, raw_public(private))
    assert signatures.PublicKey(raw_public(private)).verifies(crafted, message) is True


def test_a_short_signature_is_never_read_together_with_the_message():
    # libsodium takes the first 64 bytes of signature + message as the signature: a 63-byte
    # signature followed by a message starting with the missing byte would verify there.
    private = Ed25519PrivateKey.generate()
    real = private.sign(b"the rest")
    short, message = real[:63], real[63:] + b"the rest"
    assert not openssl_accepts(private, short, message)
    assert signatures.PublicKey(raw_public(private)).verifies(short, message) is False


def test_verdicts_match_openssl_for_good_altered_and_crafted_signatures():
    chance = random.Random(16)
    for _ in range(60):
        private = Ed25519PrivateKey.generate()
        key = signatures.PublicKey(raw_public(private))
        message = os.urandom(chance.randrange(0, 600))
        good = private.sign(message)
        cases = [(good, message), (small_order_signature(private, message), message)]
        flip = chance.randrange(64)
        cases.append((good[:flip] + bytes([good[flip] ^ (1 << chance.randrange(8))]) + good[flip + 1:], message))
        cases.append((good, message + b"x"))
        cases.append((good[:32] + (int.from_bytes(good[32:], "little") + ORDER).to_bytes(32, "little"), message))
        cases.append((Ed25519PrivateKey.generate().sign(message), message))
        for signature, signed in cases:
            assert key.verifies(signature, signed) is openssl_accepts(private, signature, signed)


def test_one_key_judges_messages_of_any_length_in_any_order_as_openssl_does():
    # The key reuses one output buffer for libsodium: a short message after a long one, a
    # refusal between two acceptances, and an empty message must each be judged alone.
    private = Ed25519PrivateKey.generate()
    key = signatures.PublicKey(raw_public(private))
    for length in (500, 3, 4000, 0, 64, 700, 1):
        message = os.urandom(length)
        good = private.sign(message)
        altered = bytes([good[0] ^ 1]) + good[1:]
        for signature, signed in ((good, message), (altered, message), (good, message + b"!"), (good, message)):
            assert key.verifies(signature, signed) is openssl_accepts(private, signature, signed)


def test_a_record_signed_with_a_small_order_r_is_stored_as_the_offline_verifier_judges_it(ship, signer, identity):
    with signer.session(session_id="crafted") as session:
        first = session.intent("refund", {"ticket": 1})
        last = session.output("done")
    crafted = dict(last, signature=base64.b64encode(small_order_signature(identity.private_key,
                                                                          signing_bytes(last))).decode())
    assert verify_records([first, crafted], {identity.key_id: identity.public_key_b64}).ok
    ship([first, crafted])
    assert AuditEvent.objects.count() == 2 and not QuarantinedRecord.objects.exists()
