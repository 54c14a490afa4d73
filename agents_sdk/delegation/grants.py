"""Delegation grants: what one agent (or a person, through the control plane) lets another do.

A grant is a JSON object signed with the issuer's Ed25519 key over its canonical JSON
without ``sig`` (the signed-record conventions of ``agents_sdk.records``)::

    {"v": 1, "iss": "orchestrator", "kid": "<issuer key id>",
     "sub": "researcher", "aud": "<researcher key id>",
     "scopes": ["read:docs"], "tools": ["search"],            # tools optional
     "constraints": {"path_prefix": "/data/", "max_amount": 100, "recipient_domain": "example.com"},
     "session": "<the session the audience acts in>", "parent_session": "<issuer's session>",
     "task": "optional free text", "iat": 1767000000, "nbf": 1767000000, "exp": 1767000600,
     "nonce": "<32 hex>", "parent": "<sha256 of the parent grant, null at the root>",
     "sig": "<base64 Ed25519 signature>"}

A chain is a list of grants, root first; ``encode_chain`` packs it into one header-safe
string (``wdc1.<base64url of the canonical JSON array>``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from agents_sdk.errors import WardenError
from agents_sdk.records import canonical_json, loads_strict

__all__ = [
    "CHAIN_PREFIX",
    "CONSTRAINT_NAMES",
    "MAX_CHAIN_BYTES",
    "MAX_LINKS",
    "DelegationError",
    "Signer",
    "decode_chain",
    "encode_chain",
    "grant_hash",
    "grant_signing_bytes",
    "issue_grant",
    "person_issuer",
]

GRANT_VERSION = 1
CHAIN_PREFIX = "wdc1."
MAX_CHAIN_BYTES = 16 * 1024
"""An encoded chain larger than this is refused before it is decoded (fits an HTTP header)."""
MAX_LINKS = 8
"""A hard cap on links whatever the registry says; the registry's limit is usually lower."""
CONSTRAINT_NAMES = ("path_prefix", "max_amount", "recipient_domain")
PERSON_PREFIX = "person:"

GRANT_FIELDS = frozenset(
    {"v", "iss", "kid", "sub", "aud", "scopes", "tools", "constraints", "session", "parent_session",
     "task", "iat", "nbf", "exp", "nonce", "parent", "sig"}
)
REQUIRED_FIELDS = frozenset({"v", "iss", "kid", "sub", "aud", "scopes", "session", "iat", "nbf", "exp", "nonce", "parent", "sig"})
HEX64 = re.compile(r"^[0-9a-f]{64}$")
NONCE = re.compile(r"^[0-9a-f]{16,64}$")
DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$")
NAME = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")
PERSON = re.compile(r"^person:[^@\s]{1,64}@[^@\s]{1,190}$")
SCOPE = re.compile(r"^[a-z][a-z0-9_-]*:(?:\*|[a-z0-9][a-z0-9_.*/-]*)$")
TOOL = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
MAX_TEXT = 200


class DelegationError(WardenError, ValueError):
    """A grant or chain cannot be built or decoded; ``check`` names the failed check."""

    def __init__(self, message: str, *, check: str = "form", link: int | None = None):
        super().__init__(message)
        self.check = check
        self.link = link


class Signer(Protocol):
    """Anything with an Ed25519 ``key_id`` and ``sign(bytes)``: an AgentIdentity, or the
    control plane's delegation authority."""

    @property
    def key_id(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


def person_issuer(email: str) -> str:
    """The ``iss`` of a grant a person issued through the control plane."""
    return PERSON_PREFIX + email


def person_allowed(issuer: str, allowed: Any) -> bool:
    """Whether ``issuer`` (``person:<email>``) is in ``allowed``, an agent's ``may_act_for``:
    e-mail addresses, ``@domain`` for everyone at a domain, or ``*``. Not a list: nobody."""
    if not isinstance(allowed, list) or not issuer.startswith(PERSON_PREFIX):
        return False
    email = issuer.removeprefix(PERSON_PREFIX).lower()
    domain = "@" + email.rpartition("@")[2]
    return any(isinstance(entry, str) and entry.lower() in ("*", email, domain) for entry in allowed)


def grant_signing_bytes(grant: Mapping[str, Any]) -> bytes:
    """The bytes a grant's signature covers: its canonical JSON without ``sig``."""
    return canonical_json({k: v for k, v in grant.items() if k != "sig"})


def grant_hash(grant: Mapping[str, Any]) -> str:
    """Hex SHA-256 of a grant's canonical JSON, signature included: its id, the ``parent``
    of the next link and what a revocation names."""
    return hashlib.sha256(canonical_json(grant)).hexdigest()


def issue_grant(
    signer: Signer,
    *,
    issuer: str,
    audience: str,
    audience_key_id: str,
    scopes: Iterable[str],
    session: str,
    lifetime: int = 600,
    tools: Iterable[str] | None = None,
    constraints: Mapping[str, Any] | None = None,
    parent: Mapping[str, Any] | None = None,
    parent_session: str | None = None,
    task: str | None = None,
    not_before: int | None = None,
    now: int | None = None,
) -> dict[str, Any]:
    """Sign a grant from ``issuer`` (an agent name, or ``person_issuer(email)``) to the agent
    ``audience`` holding the key ``audience_key_id``, for ``session``.

    ``parent`` is the grant that made the issuer a delegate (the chain's previous link);
    its expiry caps this one's. Nothing here checks attenuation: the verifier does, so
    a widening grant can be built (and will be refused). Raises DelegationError for a
    value that has no valid grant form.
    """
    issued = int(time.time()) if now is None else int(now)
    nbf = issued if not_before is None else int(not_before)
    exp = nbf + int(lifetime)
    if parent is not None:
        exp = min(exp, int(parent["exp"]))
    grant: dict[str, Any] = {
        "v": GRANT_VERSION,
        "iss": issuer,
        "kid": signer.key_id,
        "sub": audience,
        "aud": audience_key_id,
        "scopes": sorted(set(scopes)),
        "session": session,
        "iat": issued,
        "nbf": nbf,
        "exp": exp,
        "nonce": secrets.token_hex(16),
        "parent": grant_hash(parent) if parent is not None else None,
    }
    if tools is not None:
        grant["tools"] = sorted(set(tools))
    if constraints:
        grant["constraints"] = dict(constraints)
    if parent_session is None and parent is not None:
        parent_session = str(parent["session"])
    if parent_session is not None:
        grant["parent_session"] = parent_session
    if task is not None:
        grant["task"] = task
    problem = grant_form_problem(grant | {"sig": "A" * 86 + "=="})
    if problem is not None:
        raise DelegationError(problem)
    grant["sig"] = base64.b64encode(signer.sign(grant_signing_bytes(grant))).decode("ascii")
    return grant


def encode_chain(chain: Sequence[Mapping[str, Any]]) -> str:
    """Pack a chain (root first) into one string safe for an HTTP header or a tool context."""
    body = base64.urlsafe_b64encode(canonical_json(list(chain))).rstrip(b"=").decode("ascii")
    return CHAIN_PREFIX + body


def decode_chain(token: Any) -> list[dict[str, Any]]:
    """Unpack ``encode_chain``'s string (or accept an already-decoded list of grants).

    Checks only the outer form: size, encoding, strict JSON, a non-empty list of at most
    ``MAX_LINKS`` objects. Raises DelegationError (check ``size`` or ``form``).
    """
    if isinstance(token, list):
        if len(canonical_json(token)) > MAX_CHAIN_BYTES:
            raise DelegationError(f"the chain is larger than {MAX_CHAIN_BYTES} bytes", check="size")
        chain = token
    else:
        if not isinstance(token, str):
            raise DelegationError(f"a delegation chain is a string, not {type(token).__name__}")
        if len(token) > MAX_CHAIN_BYTES * 4 // 3 + len(CHAIN_PREFIX) + 4:
            raise DelegationError(f"the encoded chain is larger than {MAX_CHAIN_BYTES} bytes", check="size")
        if not token.startswith(CHAIN_PREFIX):
            raise DelegationError(f"a delegation chain starts with {CHAIN_PREFIX!r}")
        body = token[len(CHAIN_PREFIX):]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError) as exc:
            raise DelegationError("the chain is not base64url") from exc
        if len(raw) > MAX_CHAIN_BYTES:
            raise DelegationError(f"the chain is larger than {MAX_CHAIN_BYTES} bytes", check="size")
        try:
            chain = loads_strict(raw)
        except WardenError as exc:
            raise DelegationError(f"the chain is not strict JSON: {exc}") from exc
    if not isinstance(chain, list) or not chain:
        raise DelegationError("a delegation chain is a non-empty list of grants")
    if len(chain) > MAX_LINKS:
        raise DelegationError(f"the chain has {len(chain)} links; at most {MAX_LINKS}", check="depth", link=MAX_LINKS + 1)
    for index, grant in enumerate(chain, start=1):
        if not isinstance(grant, dict):
            raise DelegationError(f"link {index} is not an object", link=index)
    return chain


def grant_form_problem(grant: Mapping[str, Any]) -> str | None:
    """Why ``grant`` does not have a grant's form, or None. Says nothing of its signature."""
    keys = set(grant)
    if keys - GRANT_FIELDS:
        return f"unexpected field(s) {', '.join(sorted(map(str, keys - GRANT_FIELDS)))}"
    if REQUIRED_FIELDS - keys:
        return f"missing field(s) {', '.join(sorted(REQUIRED_FIELDS - keys))}"
    if grant["v"] != GRANT_VERSION or isinstance(grant["v"], bool):
        return f"v must be {GRANT_VERSION}"
    iss = grant["iss"]
    if not isinstance(iss, str) or not (NAME.fullmatch(iss) or PERSON.fullmatch(iss)):
        return "iss must be an agent name or person:<email>"
    if not isinstance(grant["sub"], str) or not NAME.fullmatch(grant["sub"]):
        return "sub must be an agent name"
    for name in ("kid", "aud"):
        if not isinstance(grant[name], str) or not HEX64.fullmatch(grant[name]):
            return f"{name} must be a key id (64 lowercase hex digits)"
    if grant["parent"] is not None and not (isinstance(grant["parent"], str) and HEX64.fullmatch(grant["parent"])):
        return "parent must be null or a grant hash (64 lowercase hex digits)"
    if not isinstance(grant["nonce"], str) or not NONCE.fullmatch(grant["nonce"]):
        return "nonce must be 16 to 64 lowercase hex digits"
    if not _string_list(grant["scopes"], SCOPE):
        return "scopes must be a list of distinct verb:resource scopes"
    if "tools" in grant and not _string_list(grant["tools"], TOOL):
        return "tools must be a list of distinct tool names"
    for name in ("session", "parent_session", "task"):
        if name in grant and not _text(grant[name]):
            return f"{name} must be a printable string of 1 to {MAX_TEXT} characters"
    for name in ("iat", "nbf", "exp"):
        value = grant[name]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
            return f"{name} must be a whole number of seconds since 1970"
    if grant["exp"] <= grant["nbf"]:
        return "exp must be after nbf"
    if "constraints" in grant:
        problem = constraints_problem(grant["constraints"])
        if problem is not None:
            return problem
    sig = grant["sig"]
    try:
        raw = base64.b64decode(sig, validate=True) if isinstance(sig, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 64:
        return "sig must be the base64 of a 64-byte Ed25519 signature"
    return None


def constraints_problem(constraints: Any) -> str | None:
    """Why ``constraints`` is not a valid constraints object, or None."""
    if not isinstance(constraints, dict) or not constraints:
        return "constraints must be a non-empty object"
    unknown = set(constraints) - set(CONSTRAINT_NAMES)
    if unknown:
        return f"unknown constraint(s) {', '.join(sorted(map(str, unknown)))}; known: {', '.join(CONSTRAINT_NAMES)}"
    prefix = constraints.get("path_prefix")
    if "path_prefix" in constraints and not (
        isinstance(prefix, str) and prefix.startswith("/") and prefix.endswith("/") and _text(prefix)
        and "/../" not in prefix and "/./" not in prefix and "//" not in prefix
    ):
        return "constraints.path_prefix must be an absolute directory such as /data/reports/ (ending in /)"
    amount = constraints.get("max_amount")
    if "max_amount" in constraints and not (
        isinstance(amount, int | float) and not isinstance(amount, bool) and 0 <= amount < 2**53
    ):
        return "constraints.max_amount must be a non-negative number"
    domain = constraints.get("recipient_domain")
    if "recipient_domain" in constraints and not (isinstance(domain, str) and DOMAIN.fullmatch(domain)):
        return "constraints.recipient_domain must be a lowercase domain such as example.com"
    return None


def _string_list(value: Any, pattern: re.Pattern[str]) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= 256
        and all(isinstance(item, str) and pattern.fullmatch(item) for item in value)
        and len(set(value)) == len(value)
    )


def _text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_TEXT and value.isprintable()
