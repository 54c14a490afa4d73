"""The keys and settings a bundle's signature is verified with."""


from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from agents_sdk.bundles.format import SIGNING_ALGORITHMS

# JWS algorithm suffix -> (hashlib name for HMAC, the hash for RSA/ECDSA).
_DIGESTS: dict[str, tuple[str, type[hashes.SHA256] | type[hashes.SHA384] | type[hashes.SHA512]]] = {
    "256": ("sha256", hashes.SHA256),
    "384": ("sha384", hashes.SHA384),
    "512": ("sha512", hashes.SHA512),
}

# -- keys and verification -------------------------------------------------------------


@dataclass(frozen=True)
class VerificationKey:
    """One entry of OPA's `keys`: a public key (PKIX PEM) or, for HS*, a shared secret."""

    key_id: str
    algorithm: str = "RS256"
    key: str = field(default="", repr=False)
    scope: str = ""

    def __post_init__(self) -> None:
        if self.algorithm not in SIGNING_ALGORITHMS:
            raise ValueError(f"unsupported algorithm {self.algorithm!r} for key {self.key_id!r}")
        if not self.key:
            raise ValueError(f"key {self.key_id!r} has no key material")
        if not self.algorithm.startswith("HS"):
            self._public_key()  # refuse a bad PEM at configuration time, not at the first bundle

    @classmethod
    def from_pem(cls, key_id: str, pem: str | bytes, algorithm: str = "RS256", scope: str = "") -> VerificationKey:
        """A key from a PEM public key (``-----BEGIN PUBLIC KEY-----``). Raises ValueError if it isn't one."""
        text = pem.decode("ascii") if isinstance(pem, bytes) else pem
        return cls(key_id=key_id, algorithm=algorithm, key=text, scope=scope)

    def _public_key(self) -> PublicKeyTypes:
        try:
            return serialization.load_pem_public_key(self.key.encode("utf-8"))
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"key {self.key_id!r} is not a PEM public key: {exc}") from exc

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's JWS signature (RFC 7518) of ``signing_input``."""
        hmac_name, digest = _DIGESTS[self.algorithm[2:]]
        family = self.algorithm[:2]
        if family == "HS":
            expected = hmac.new(self.key.encode("utf-8"), signing_input, hmac_name).digest()
            return hmac.compare_digest(expected, signature)
        public_key = self._public_key()
        try:
            if family in ("RS", "PS"):
                if not isinstance(public_key, rsa.RSAPublicKey):
                    return False
                pad = (
                    padding.PKCS1v15()
                    if family == "RS"
                    else padding.PSS(mgf=padding.MGF1(digest()), salt_length=padding.PSS.AUTO)
                )
                public_key.verify(signature, signing_input, pad, digest())
            else:
                if not isinstance(public_key, ec.EllipticCurvePublicKey):
                    return False
                # JWS carries ES* signatures as fixed-width R || S, not DER.
                size = (public_key.curve.key_size + 7) // 8
                if len(signature) != 2 * size:
                    return False
                r = int.from_bytes(signature[:size], "big")
                s = int.from_bytes(signature[size:], "big")
                public_key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(digest()))
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class VerificationConfig:
    """OPA's `bundles[x].signing` with the top-level `keys`.

    ``keyid`` set makes a signature mandatory and selects the key (it wins over the JWT's
    ``kid``, as in OPA). Without it, a signed bundle is verified with the key its ``kid``
    names, and an unsigned one is accepted (OPA's rule) unless ``require_signature``.
    """

    keys: Mapping[str, VerificationKey]
    keyid: str = ""
    scope: str = ""
    exclude_files: Sequence[str] = ()
    require_signature: bool = False

    def __post_init__(self) -> None:
        if self.keyid and self.keyid not in self.keys:
            raise ValueError(f"signing key id {self.keyid!r} is not among the configured keys {sorted(self.keys)}")


