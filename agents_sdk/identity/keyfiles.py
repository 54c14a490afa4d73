"""Reading and writing an identity's private key file: atomic, never briefly readable by
others, a passphrase checked for what the file holds."""

from __future__ import annotations

import errno
import os
import tempfile
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


def _write_file(path: Path, data: bytes, *, mode: int, overwrite: bool) -> None:
    """Write ``data`` to ``path`` atomically with exactly ``mode`` (never briefly wider)."""
    # mkstemp creates the file 0600, so the key is never readable by others, even briefly.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        if overwrite:
            os.replace(tmp_name, path)
        else:
            # link() fails if the target exists, so a file created meanwhile is never clobbered.
            try:
                os.link(tmp_name, path)
            except FileExistsError:
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
            os.unlink(tmp_name)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise

