"""Sealing the records of a batch: Fernet tokens, each exactly what `Fernet.encrypt` makes,
from ONE AES-CBC context for the whole batch instead of one per record.

`Fernet.encrypt` builds and checks a cipher, a padder and an HMAC object per token, which
costs the worker about as much as the encryption itself. CBC encrypts block i as
E(P_i xor C_{i-1}) with C_0 = IV; run over several messages, one context chains a message's
first block to the last ciphertext block C_prev of the message before. Feeding
P_1 xor IV xor C_prev instead of P_1 makes that block E(P_1 xor IV): the message encrypted
under its own fresh random IV, bit for bit what a context of its own would give. The token
is then the Fernet specification's: 0x80, the time, the IV, the ciphertext and their
HMAC-SHA256, base64url. `tests/audit/test_sealing.py` compares tokens with Fernet's own.
"""

from __future__ import annotations

import hmac
import struct
from binascii import b2a_base64
from os import urandom
from time import time

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_BLOCK = 16
_VERSION = b"\x80"
# IVs drawn from the OS per call: one system call per this many tokens instead of one each
# (every IV is still 16 fresh random bytes of its own, as Fernet draws them).
IVS_PER_DRAW = 256
_URLSAFE = bytes.maketrans(b"+/", b"-_")  # base64 to base64url, as base64.urlsafe_b64encode does


def _keys(fernet: Fernet | MultiFernet) -> tuple[bytes, bytes] | None:
    """(signing key, encryption key) of the key `fernet` encrypts with, or None if this
    `cryptography` keeps them elsewhere (then each token is made by `fernet.encrypt`)."""
    if isinstance(fernet, MultiFernet):
        fernets = getattr(fernet, "_fernets", None)
        if not fernets:
            return None
        fernet = fernets[0]  # MultiFernet encrypts with its first key
    signing, encryption = getattr(fernet, "_signing_key", None), getattr(fernet, "_encryption_key", None)
    if not (isinstance(signing, bytes) and isinstance(encryption, bytes) and len(signing) == len(encryption) == 16):
        return None
    return signing, encryption


class BatchSealer:
    """`seal(data)` returns `fernet.encrypt(data)`, faster. One instance per batch (it holds
    a cipher context); not for use from several threads."""

    __slots__ = ("_fernet", "_signing_key", "_encryptor", "_previous", "_ivs", "_next_iv", "fast")

    def __init__(self, fernet: Fernet | MultiFernet) -> None:
        self._fernet = fernet
        keys = _keys(fernet)
        self.fast = keys is not None
        if keys is not None:
            self._signing_key = keys[0]
            previous = urandom(_BLOCK)  # the context's own IV: never in a token
            self._encryptor = Cipher(algorithms.AES(keys[1]), modes.CBC(previous)).encryptor()
            self._previous = int.from_bytes(previous, "big")
            self._ivs, self._next_iv = b"", 0

    def seal(self, data: bytes) -> bytes:
        if not self.fast:
            return self._fernet.encrypt(data)
        start = self._next_iv
        if start == len(self._ivs):
            self._ivs, start = urandom(_BLOCK * IVS_PER_DRAW), 0
        iv = self._ivs[start:start + _BLOCK]
        self._next_iv = start + _BLOCK
        pad = _BLOCK - len(data) % _BLOCK
        padded = data + bytes((pad,)) * pad  # PKCS#7, as Fernet pads
        first = int.from_bytes(padded[:_BLOCK], "big") ^ int.from_bytes(iv, "big") ^ self._previous
        ciphertext = self._encryptor.update(first.to_bytes(_BLOCK, "big") + padded[_BLOCK:])
        self._previous = int.from_bytes(ciphertext[-_BLOCK:], "big")
        signed = _VERSION + struct.pack(">Q", int(time())) + iv + ciphertext
        return b2a_base64(signed + hmac.digest(self._signing_key, signed, "sha256"), newline=False).translate(_URLSAFE)
