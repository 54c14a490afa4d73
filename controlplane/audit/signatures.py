"""Ed25519 checks for the verifying worker: libsodium's (PyNaCl) where it is installed, about
twice as fast as OpenSSL's on this machine, with exactly the verdicts of the offline verifier
(`warden audit verify`, which uses `cryptography`/OpenSSL).

libsodium refuses more than OpenSSL (small-order keys and R points, non-canonical keys) and
accepts nothing OpenSSL refuses: both check [S]B = R + [k]A without the cofactor, S < L, and
compare R's bytes to the encoding of the computed point. So a signature libsodium accepts
is one OpenSSL accepts, and one it refuses is judged again by OpenSSL, whose verdict stands:
the extra cost falls on bad signatures only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

_sodium_open: Callable[[bytes, bytes], bytes] | None
_SodiumError: type[Exception]
try:
    from nacl.bindings import crypto_sign_open as _sodium_open
    from nacl.exceptions import CryptoError as _SodiumError
except ImportError:  # PyNaCl not installed: OpenSSL alone, the same verdicts
    _sodium_open = None
    _SodiumError = Exception
_ffi: Any = None
_lib: Any = None
try:
    # The cffi binding `nacl.bindings.crypto_sign_open` wraps: called directly, a key reuses
    # one output buffer instead of allocating, zeroing and copying one per record.
    from nacl._sodium import ffi as _ffi, lib as _lib  # type: ignore[import-not-found,no-redef]
except ImportError:  # another PyNaCl layout: the public binding, the same verdicts
    pass

SIGNATURE_BYTES = 64
SODIUM = _sodium_open is not None


class PublicKey:
    """An agent's Ed25519 public key, loaded once per batch and used for all its records."""

    __slots__ = ("_openssl", "_raw", "_opened", "_room")

    def __init__(self, raw: bytes) -> None:
        """Raises ValueError unless `raw` is 32 bytes (as `Ed25519PublicKey.from_public_bytes`)."""
        self._openssl = Ed25519PublicKey.from_public_bytes(raw)
        self._raw = bytes(raw)
        self._opened: Any = None  # libsodium's output buffer (the message), grown as needed
        self._room = 0

    def verifies(self, signature: bytes, message: bytes) -> bool:
        """Whether `signature` is this key's Ed25519 signature of `message`, as OpenSSL judges it."""
        if _lib is not None and len(signature) == SIGNATURE_BYTES:
            signed = signature + message
            if len(signed) > self._room:
                self._room = max(len(signed), 2 * self._room)
                self._opened = _ffi.new("unsigned char[]", self._room)
            if _lib.crypto_sign_open(self._opened, _ffi.NULL, signed, len(signed), self._raw) == 0:
                return True
            # refused by libsodium: OpenSSL, which may accept more, decides (below)
        elif _sodium_open is not None and len(signature) == SIGNATURE_BYTES:
            try:
                _sodium_open(signature + message, self._raw)
                return True
            except _SodiumError:
                pass  # refused by libsodium: OpenSSL, which may accept more, decides
        try:
            self._openssl.verify(signature, message)
        except InvalidSignature:
            return False
        return True
