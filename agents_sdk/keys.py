"""Ed25519 public keys as Warden names and transports them.

A key's id is its fingerprint: the lowercase hex SHA-256 of the 32 raw public key
bytes. The control plane and the SDK both compute it here, so they always agree.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agents_sdk.errors import WardenError

ED25519_PUBLIC_KEY_LENGTH = 32


class InvalidPublicKey(WardenError, ValueError):
    """The text given is not an Ed25519 public key in a format Warden accepts."""


def key_fingerprint(raw_public_key: bytes) -> str:
    """Return the key id of a raw 32-byte Ed25519 public key."""
    if len(raw_public_key) != ED25519_PUBLIC_KEY_LENGTH:
        raise InvalidPublicKey("an Ed25519 public key is 32 bytes")
    return hashlib.sha256(raw_public_key).hexdigest()


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    """Return the 32 raw bytes of a public key object."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def encode_public_key(key: Ed25519PublicKey) -> str:
    """Return the public key as standard base64 of its raw bytes (Warden's wire format)."""
    return base64.b64encode(raw_public_key(key)).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Parse a public key given as base64 of the raw 32 bytes or as a PEM block.

    Raises InvalidPublicKey with a message fit to show the person who sent it.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidPublicKey("a public key is required")
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise InvalidPublicKey("not a valid PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise InvalidPublicKey("the PEM key is not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidPublicKey("not valid base64") from exc
    if len(raw) != ED25519_PUBLIC_KEY_LENGTH:
        raise InvalidPublicKey(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)
