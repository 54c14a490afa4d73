"""The key that encrypts secrets at rest (bundle signing keys, checkpoint keys, audit data).

Rotation: the current key encrypts; earlier keys (WARDEN_ENCRYPTION_KEY_FALLBACKS, and keys
derived from WARDEN_SECRET_KEY_FALLBACKS) still decrypt, so changing WARDEN_SECRET_KEY or
WARDEN_ENCRYPTION_KEY never makes stored keys unreadable. `manage.py rotate_encryption_key`
then re-encrypts the stored private keys under the current key.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


def _derived(secret_key: str) -> Fernet:
    # The HKDF ``info`` names bundle keys for historical reasons: changing it would make every
    # stored ciphertext unreadable, so the bytes stay as they are.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"warden bundle signing keys").derive(
        secret_key.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def _keys() -> list[Fernet]:
    configured = getattr(settings, "WARDEN_ENCRYPTION_KEY", "")
    keys = [Fernet(configured.encode("ascii"))] if configured else []
    keys.append(_derived(settings.SECRET_KEY))  # ciphertexts from before a key was configured
    keys += [Fernet(key.encode("ascii")) for key in getattr(settings, "WARDEN_ENCRYPTION_KEY_FALLBACKS", ())]
    keys += [_derived(key) for key in getattr(settings, "SECRET_KEY_FALLBACKS", ())]
    return keys


def secrets_at_rest() -> MultiFernet:
    """Encrypts with WARDEN_ENCRYPTION_KEY (or a key derived from the secret key when none is
    configured); decrypts with that key or any earlier one."""
    return MultiFernet(_keys())
