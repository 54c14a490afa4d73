"""Bundle signing keys: generated here, stored encrypted, exported as public PEM."""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import transaction

from controlplane.bundles.models import SigningKey

RSA_KEY_BITS = 3072


def _fernet() -> Fernet:
    """The key that encrypts signing keys at rest: WARDEN_ENCRYPTION_KEY, or one derived
    from the secret key (so changing WARDEN_SECRET_KEY makes stored signing keys unreadable)."""
    configured = os.environ.get("WARDEN_ENCRYPTION_KEY")
    if configured:
        return Fernet(configured.encode("ascii"))
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"warden bundle signing keys").derive(
        settings.SECRET_KEY.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(derived))


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
        encrypted_private_key=_fernet().encrypt(private_pem),
    )


def private_key_pem(key: SigningKey) -> bytes:
    try:
        return _fernet().decrypt(bytes(key.encrypted_private_key))
    except InvalidToken as exc:
        raise RuntimeError(
            f"signing key {key.kid} cannot be decrypted: WARDEN_SECRET_KEY or WARDEN_ENCRYPTION_KEY changed"
        ) from exc
