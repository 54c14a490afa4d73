"""Registering an agent and its public key with the control plane (only the public key is
ever sent), and the idempotent registration from public metadata alone."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents_sdk.errors import IdentityError, RegistrationError
from agents_sdk.identity.names import RISK_TIERS
from agents_sdk.version import __version__


@dataclass(frozen=True)
class Registration:
    """What the control plane answered to a registration.

    ``agent`` is the agent object (``None`` when only a key was registered), ``key``
    the key object, ``key_id`` the key id the control plane stored.
    """

    key_id: str
    key: dict[str, Any]
    agent: dict[str, Any] | None = None



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
