"""Agent identities: an Ed25519 key pair with the agent's name, owner and scopes.

An identity lives in two files: the private key (PEM, PKCS#8, mode 0600, optionally
encrypted with a passphrase) and, next to it, a JSON metadata file named after the key
file plus ``.json`` (``billing-bot.pem`` → ``billing-bot.pem.json``). The metadata holds
nothing secret: name, owner, scopes, the key id and the public key, so it can be handed
to whoever verifies the agent's signed logs.

Only the public key ever leaves the machine: ``register`` sends it to the control
plane, which computes the same key id (``agents_sdk.keys.key_fingerprint``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agents_sdk import __version__
from agents_sdk.errors import IdentityError, IdentityExistsError, PassphraseError, RegistrationError
from agents_sdk.keys import encode_public_key, key_fingerprint, raw_public_key

METADATA_FORMAT = "warden-agent-identity/1"
RISK_TIERS = ("minimal", "limited", "high", "unacceptable")

# A slug that is safe in a URL path segment (/api/v1/agents/{name}/) and a file name.
NAME_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")
# verb:resource, e.g. read:tickets, write:files, call:payments.refund, read:*
SCOPE_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*:(?:\*|[a-z0-9][a-z0-9_.*/-]*)$")
# Deliberately loose: the control plane owns the full e-mail rules.
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid agent slug; raise IdentityError otherwise."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise IdentityError(
            f"agent name {name!r} must be a slug: 1-64 lowercase letters, digits, '-' or '_', "
            "starting and ending with a letter or digit"
        )
    return name


def validate_owner(owner: str) -> str:
    """Return ``owner`` if it looks like an e-mail address; raise IdentityError otherwise."""
    if not isinstance(owner, str) or not EMAIL_PATTERN.fullmatch(owner):
        raise IdentityError(f"owner {owner!r} must be an e-mail address such as team@example.com")
    return owner


def validate_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Return the scopes as a tuple in their given order, without duplicates.

    Each scope is ``verb:resource`` (``read:tickets``, ``call:payments.refund``,
    ``read:*``). Raises IdentityError naming the first invalid scope.
    """
    if isinstance(scopes, str):
        raise IdentityError("scopes must be a list of 'verb:resource' strings, not a single string")
    result: list[str] = []
    for scope in scopes:
        if not isinstance(scope, str) or not SCOPE_PATTERN.fullmatch(scope):
            raise IdentityError(
                f"scope {scope!r} must be 'verb:resource' in lowercase, e.g. 'read:tickets' or 'read:*'"
            )
        if scope not in result:
            result.append(scope)
    return tuple(result)


def metadata_path_for(key_path: str | os.PathLike[str]) -> Path:
    """Return where the metadata of the identity whose private key is at ``key_path`` lives."""
    path = Path(key_path)
    return path.with_name(path.name + ".json")


@dataclass(frozen=True)
class Registration:
    """What the control plane answered to a registration.

    ``agent`` is the agent object (``None`` when only a key was registered), ``key``
    the key object, ``key_id`` the key id the control plane stored.
    """

    key_id: str
    key: dict[str, Any]
    agent: dict[str, Any] | None = None


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
            _write_file(key_path, pem, mode=0o600, overwrite=overwrite)
            _write_file(meta_path, metadata, mode=0o644, overwrite=overwrite)
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


def _api_url(base_url: str, path: str) -> str:
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise RegistrationError(f"control plane URL {base_url!r} must start with http:// or https://")
    return f"{base_url.rstrip('/')}/api/v1/{path}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would replay a redirected POST as a GET (and could carry the token elsewhere).
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _post_json(url: str, api_token: str, body: dict[str, Any], *, timeout: float) -> Any:
    return _request_json("POST", url, api_token, body, timeout=timeout)


def _request_json(method: str, url: str, api_token: str, body: dict[str, Any] | None, *, timeout: float) -> Any:
    if not api_token:
        raise RegistrationError("an API token is required to register with the control plane", url=url)
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode("utf-8") if body is not None else None,
        method=method,
        headers={
            "Authorization": f"Token {api_token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"warden-agents-sdk/{__version__}",
        },
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        answer = _decode_json(raw)
        if 300 <= exc.code < 400:
            location = exc.headers.get("Location", "?")
            message = f"{method} {url} was redirected ({exc.code}) to {location}; check the control plane URL"
        else:
            message = f"{method} {url} failed with {exc.code}: {_server_message(answer, raw, exc.reason)}"
        raise RegistrationError(message, status=exc.code, body=answer, url=url) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistrationError(f"cannot reach the control plane at {url}: {reason}", url=url) from exc
    answer = _decode_json(raw)
    if raw and answer is None:
        raise RegistrationError(f"the control plane's answer to {method} {url} is not JSON", url=url)
    return answer


@dataclass(frozen=True)
class PublicRegistration:
    """What ``register_public_identity`` did: whether it created the agent and the key, or
    found them already registered (so running it twice is safe)."""

    agent_created: bool
    key_created: bool
    key_id: str
    agent: dict[str, Any] | None = None


def register_public_identity(
    base_url: str,
    api_token: str,
    metadata: Mapping[str, Any],
    *,
    display_name: str | None = None,
    risk_tier: str = "minimal",
    environments: Sequence[str] = (),
    timeout: float = 10.0,
) -> PublicRegistration:
    """Register an agent and its public key from the identity's public metadata (the
    ``.json`` that ``AgentIdentity.save`` writes; no private key needed), idempotently.

    An agent that already exists is kept as it is (its scopes are not changed here); a key
    already registered for this agent is success; a key registered for another agent, or
    any other refusal, raises RegistrationError naming what the control plane said.
    """
    if risk_tier not in RISK_TIERS:
        raise IdentityError(f"risk_tier {risk_tier!r} must be one of {', '.join(RISK_TIERS)}")
    name, owner = metadata.get("name"), metadata.get("owner")
    public_key, key_id = metadata.get("public_key"), metadata.get("key_id")
    scopes = metadata.get("scopes") or []
    for field_name, value in (("name", name), ("owner", owner), ("public_key", public_key), ("key_id", key_id)):
        if not isinstance(value, str) or not value:
            raise IdentityError(f"the identity metadata has no {field_name}; is it a file written by `warden identity create`?")
    assert isinstance(name, str) and isinstance(key_id, str)  # for the type checker: checked just above
    agent_created, agent = True, None
    try:
        agent = _request_json(
            "POST", _api_url(base_url, "agents/"), api_token,
            {"name": name, "display_name": display_name or name, "owner_email": owner, "scopes": list(scopes),
             "risk_tier": risk_tier, "environments": list(environments)},
            timeout=timeout,
        )
    except RegistrationError as exc:
        if exc.status != 409:
            raise
        agent_created = False  # registered before: keep it as it is
    keys_url = _api_url(base_url, f"agents/{name}/keys/")
    key_created = True
    try:
        key = _request_json("POST", keys_url, api_token, {"public_key": public_key}, timeout=timeout)
    except RegistrationError as exc:
        if exc.status != 409 or "already registered" not in exc.message:
            raise  # e.g. a revoked agent, or too many active keys: the server's message says which
        # Already registered: fine if it is this agent's key (a 404 here means another agent's).
        try:
            key = _request_json("GET", f"{keys_url}{key_id}/", api_token, None, timeout=timeout)
        except RegistrationError as lookup:
            if lookup.status == 404:
                raise RegistrationError(
                    f"public key {key_id[:16]}… is registered for another agent, not {name!r}; create a new identity",
                    status=409, body=exc.body, url=keys_url,
                ) from exc
            raise
        key_created = False
    stored = key.get("key_id") if isinstance(key, dict) else None
    if stored != key_id:
        raise RegistrationError(
            f"the control plane stored key id {stored!r} but this key's id is {key_id}", url=keys_url, body=key
        )
    return PublicRegistration(agent_created, key_created, key_id, agent if isinstance(agent, dict) else None)


def _decode_json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8")) if raw else None
    except ValueError:
        return None


def _server_message(answer: Any, raw: bytes, reason: str) -> str:
    """Flatten a DRF error body ({"detail": ...} or {"field": ["msg"]}) into one line."""
    if isinstance(answer, dict) and answer:
        parts = []
        for key, value in answer.items():
            text = "; ".join(str(v) for v in value) if isinstance(value, list) else str(value)
            parts.append(text if key in ("detail", "non_field_errors") else f"{key}: {text}")
        return " | ".join(parts)
    if isinstance(answer, list) and answer:
        return "; ".join(str(v) for v in answer)
    text = raw.decode("utf-8", "replace").strip()
    return text[:500] if text else str(reason)
