"""Bundle signing keys: generated here, stored encrypted, exported as public PEM."""

from __future__ import annotations

import hashlib

from cryptography.fernet import InvalidToken
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.db import transaction

from controlplane.bundles.models import SigningKey
from controlplane.core.crypto import secrets_at_rest

RSA_KEY_BITS = 3072


def key_id_for(public_key_pem: str) -> str:
    public_key = serialization.load_pem_public_key(public_key_pem.encode("ascii"))
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "warden-" + hashlib.sha256(der).hexdigest()[:16]


@transaction.atomic
def active_signing_key() -> SigningKey:
    """The key new bundles are signed with, generated on first use."""
    key = SigningKey.objects.select_for_update().filter(is_active=True).first()
    if key is not None:
        return key
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
    return SigningKey.objects.create(
        kid=key_id_for(public_pem),
        algorithm="RS256",
        public_key_pem=public_pem,
        encrypted_private_key=secrets_at_rest().encrypt(private_pem),
    )


def private_key_pem(key: SigningKey) -> bytes:
    try:
        return secrets_at_rest().decrypt(bytes(key.encrypted_private_key))
    except InvalidToken as exc:
        raise RuntimeError(
            f"signing key {key.kid} cannot be decrypted: WARDEN_SECRET_KEY or WARDEN_ENCRYPTION_KEY changed"
        ) from exc
