"""``AgentIdentity``: an agent's Ed25519 key pair with its name, owner and scopes."""

from __future__ import annotations

import json
import os
import stat
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agents_sdk.errors import IdentityError, PassphraseError, RegistrationError
from agents_sdk.files import write_atomically
from agents_sdk.identity.keyfiles import _exists_error, _load_private_key
from agents_sdk.identity.names import (
    METADATA_FORMAT,
    RISK_TIERS,
    metadata_path_for,
    validate_name,
    validate_owner,
    validate_scopes,
)
from agents_sdk.identity.registration import Registration, _api_url, _post_json, register_public_identity
from agents_sdk.keys import encode_public_key, key_fingerprint, raw_public_key


@dataclass(frozen=True, eq=False)
class AgentIdentity:
    """An agent's Ed25519 key pair with its name, owner e-mail and scopes.

    Create one with ``AgentIdentity.create``, persist it with ``save`` and get it back
    with ``AgentIdentity.load``. ``previous_key_ids`` lists the ids of the keys this
    identity replaced through ``rotate``, newest first, so they can be revoked.
    """

    name: str
    owner: str
    scopes: tuple[str, ...]
    private_key: Ed25519PrivateKey = field(repr=False)
    previous_key_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_name(self.name)
        validate_owner(self.owner)
        object.__setattr__(self, "scopes", validate_scopes(self.scopes))
        object.__setattr__(self, "previous_key_ids", tuple(self.previous_key_ids))
        if not isinstance(self.private_key, Ed25519PrivateKey):
            raise IdentityError("an agent identity needs an Ed25519 private key")

    # -- construction -----------------------------------------------------------------

    @classmethod
    def create(cls, name: str, owner: str, scopes: Iterable[str] = ()) -> AgentIdentity:
        """Create a new identity with a freshly generated Ed25519 key.

        Raises IdentityError if the name, owner or a scope is invalid.
        """
        return cls(name=name, owner=owner, scopes=validate_scopes(scopes), private_key=Ed25519PrivateKey.generate())

    def rotate(self) -> AgentIdentity:
        """Return a new identity with a new key and the same name, owner and scopes.

        The old key id is kept first in ``previous_key_ids`` (also as ``rotated_from``)
        so the control plane can be told to revoke it once the new key is registered.
        The new identity is not saved: call ``save(path, overwrite=True)``.
        """
        return AgentIdentity(
            name=self.name,
            owner=self.owner,
            scopes=self.scopes,
            private_key=Ed25519PrivateKey.generate(),
            previous_key_ids=(self.key_id, *self.previous_key_ids),
        )

    # -- public key -------------------------------------------------------------------

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The public half of the agent's key."""
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        """The key id: lowercase hex SHA-256 of the raw public key, as the control plane computes it."""
        return key_fingerprint(raw_public_key(self.public_key))

    @property
    def public_key_b64(self) -> str:
        """The public key as base64 of its 32 raw bytes (Warden's wire format)."""
        return encode_public_key(self.public_key)

    @property
    def public_key_pem(self) -> str:
        """The public key as a PEM ``PUBLIC KEY`` block (SubjectPublicKeyInfo)."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    @property
    def rotated_from(self) -> str | None:
        """The id of the key this identity's key replaced, or ``None`` if it never rotated."""
        return self.previous_key_ids[0] if self.previous_key_ids else None

    def sign(self, data: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``data``."""
        return self.private_key.sign(data)

    # -- files ------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """Return the identity's public metadata as written next to its key file."""
        return {
            "format": METADATA_FORMAT,
            "name": self.name,
            "owner": self.owner,
            "scopes": list(self.scopes),
            "key_id": self.key_id,
            "public_key": self.public_key_b64,
            "previous_key_ids": list(self.previous_key_ids),
            "saved_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        passphrase: str | bytes | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Write the private key to ``path`` (PEM PKCS#8, mode 0600) and its metadata beside it.

        With a passphrase the key is encrypted (the best scheme ``cryptography`` offers).
        Returns the key path. Raises IdentityExistsError if either file exists and
        ``overwrite`` is false, IdentityError if the files cannot be written.
        """
        key_path = Path(path)
        meta_path = metadata_path_for(key_path)
        if not overwrite:
            for existing in (key_path, meta_path):
                if existing.exists():
                    raise _exists_error(existing)
        if passphrase is not None:
            secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
            if not secret:
                raise PassphraseError("the passphrase is empty; pass None for an unencrypted key")
            encryption: serialization.KeySerializationEncryption = serialization.BestAvailableEncryption(secret)
        else:
            encryption = serialization.NoEncryption()
        pem = self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
        metadata = (json.dumps(self.metadata(), indent=2, sort_keys=True) + "\n").encode("utf-8")
        try:
            key_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(key_path, pem, mode=0o600, overwrite=overwrite)
            write_atomically(meta_path, metadata, mode=0o644, overwrite=overwrite)
        except FileExistsError as exc:
            raise _exists_error(Path(exc.filename or key_path)) from exc
        except OSError as exc:
            raise IdentityError(f"cannot write identity to {key_path}: {exc.strerror or exc}") from exc
        return key_path

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, passphrase: str | bytes | None = None) -> AgentIdentity:
        """Load an identity saved with ``save``.

        Raises PassphraseError if the key is encrypted and no passphrase was given, if
        the passphrase is wrong, or if one was given for an unencrypted key;
        IdentityError if a file is missing or unreadable, the key is not Ed25519, or the
        metadata does not belong to the key. Warns if the key file is readable by others.
        """
        key_path = Path(path)
        meta_path = metadata_path_for(key_path)
        try:
            pem = key_path.read_bytes()
            key_mode = key_path.stat().st_mode
        except OSError as exc:
            raise IdentityError(f"cannot read private key {key_path}: {exc.strerror or exc}") from exc
        if os.name == "posix" and key_mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.warn(
                f"private key {key_path} is accessible by other users (mode {stat.S_IMODE(key_mode):04o}); "
                "run chmod 600 on it",
                stacklevel=2,
            )
        private_key = _load_private_key(pem, passphrase, key_path)
        try:
            metadata = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise IdentityError(f"identity metadata {meta_path} is missing (it is written next to the key)") from exc
        except (OSError, ValueError) as exc:
            raise IdentityError(f"cannot read identity metadata {meta_path}: {exc}") from exc
        if not isinstance(metadata, dict) or metadata.get("format") != METADATA_FORMAT:
            raise IdentityError(f"{meta_path} is not a Warden identity metadata file ({METADATA_FORMAT})")
        try:
            identity = cls(
                name=metadata["name"],
                owner=metadata["owner"],
                scopes=tuple(metadata.get("scopes", ())),
                private_key=private_key,
                previous_key_ids=tuple(metadata.get("previous_key_ids", ())),
            )
        except KeyError as exc:
            raise IdentityError(f"identity metadata {meta_path} has no {exc.args[0]!r}") from exc
        if metadata.get("key_id") != identity.key_id:
            raise IdentityError(
                f"{meta_path} describes key {metadata.get('key_id')!r} but {key_path} holds key "
                f"{identity.key_id}; the two files do not belong together"
            )
        return identity

    # -- control plane ----------------------------------------------------------------

    def register(
        self,
        base_url: str,
        api_token: str,
        *,
        display_name: str | None = None,
        risk_tier: str = "minimal",
        environments: Sequence[str] = (),
        timeout: float = 10.0,
        exist_ok: bool = False,
    ) -> Registration:
        """Register the agent and its public key with the control plane.

        Sends ``POST {base_url}/api/v1/agents/`` then ``POST .../agents/{name}/keys/``.
        Only the public key is sent. Raises RegistrationError carrying the server's
        message on a refusal (4xx) or a server error (5xx), on a redirect (usually a
        wrong ``base_url``), when the server cannot be reached, or when the key id the
        control plane stored differs from ours. IdentityError if ``risk_tier`` is invalid.
        With ``exist_ok=True`` an agent or key registered before is success (the agent is
        left as it is), so a program may register at every start.
        """
        if exist_ok:
            done = register_public_identity(
                base_url, api_token, self.metadata(), display_name=display_name, risk_tier=risk_tier,
                environments=environments, timeout=timeout,
            )
            return Registration(key_id=done.key_id, key={"key_id": done.key_id}, agent=done.agent)
        if risk_tier not in RISK_TIERS:
            raise IdentityError(f"risk_tier {risk_tier!r} must be one of {', '.join(RISK_TIERS)}")
        agent = _post_json(
            _api_url(base_url, "agents/"),
            api_token,
            {
                "name": self.name,
                "display_name": display_name or self.name,
                "owner_email": self.owner,
                "scopes": list(self.scopes),
                "risk_tier": risk_tier,
                "environments": list(environments),
            },
            timeout=timeout,
        )
        key = self.register_key(base_url, api_token, timeout=timeout)
        return Registration(key_id=key.key_id, key=key.key, agent=agent if isinstance(agent, dict) else None)

    def register_key(self, base_url: str, api_token: str, *, timeout: float = 10.0) -> Registration:
        """Register this identity's public key for an agent that already exists.

        Use it after ``rotate``. Sends ``POST {base_url}/api/v1/agents/{name}/keys/``.
        Raises RegistrationError as ``register`` does.
        """
        url = _api_url(base_url, f"agents/{self.name}/keys/")
        key = _post_json(url, api_token, {"public_key": self.public_key_b64}, timeout=timeout)
        if not isinstance(key, dict) or not isinstance(key.get("key_id"), str):
            raise RegistrationError(f"the control plane's answer to POST {url} has no key_id", url=url, body=key)
        if key["key_id"] != self.key_id:
            raise RegistrationError(
                f"the control plane stored key id {key['key_id']} but this key's id is {self.key_id}",
                url=url,
                body=key,
            )
        return Registration(key_id=key["key_id"], key=key)

