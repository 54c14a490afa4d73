"""The key that encrypts secrets at rest (bundle signing keys, checkpoint keys, audit data)."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


def secrets_at_rest() -> Fernet:
    """WARDEN_ENCRYPTION_KEY, or a key derived from the secret key.

    The HKDF ``info`` names bundle keys for historical reasons: changing it would make every
    stored ciphertext unreadable, so the bytes stay as they are.
    """
    configured = getattr(settings, "WARDEN_ENCRYPTION_KEY", "")
    if configured:
        return Fernet(configured.encode("ascii"))
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"warden bundle signing keys").derive(
        settings.SECRET_KEY.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(derived))
