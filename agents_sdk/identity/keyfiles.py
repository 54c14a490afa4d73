"""Reading an identity's private key file, a passphrase checked for what the file holds.
(It is written by ``agents_sdk.files.write_atomically``: atomic, never briefly readable by
others.)"""

from __future__ import annotations

from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents_sdk.errors import IdentityError, IdentityExistsError, PassphraseError


def _exists_error(path: Path) -> IdentityExistsError:
    return IdentityExistsError(
        f"{path} already exists; pass overwrite=True to replace it (the key it holds will be lost)", path=str(path)
    )


def _load_private_key(pem: bytes, passphrase: str | bytes | None, key_path: Path) -> Ed25519PrivateKey:
    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    encrypted = b"ENCRYPTED PRIVATE KEY" in pem
    if encrypted and not secret:
        raise PassphraseError(f"private key {key_path} is encrypted; a passphrase is required")
    if not encrypted and secret:
        raise PassphraseError(f"private key {key_path} is not encrypted; do not pass a passphrase")
    try:
        key = serialization.load_pem_private_key(pem, password=secret if encrypted else None)
    except ValueError as exc:
        if encrypted:
            raise PassphraseError(f"wrong passphrase for private key {key_path}") from exc
        raise IdentityError(f"{key_path} is not a PEM private key") from exc
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise IdentityError(f"cannot load private key {key_path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{key_path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


