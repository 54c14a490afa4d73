"""data.warden_registry as canonical JSON bytes, at a cost proportional to what changed.

At 100,000 agents the registry is tens of megabytes of JSON. Building it through the ORM
(a prefetch per agent, JSON decoding of every row) and re-encoding it on every change made
one suspension cost over half a minute. Here:

- one query returns each agent of the environment with an md5 of its bundle facts,
  computed by PostgreSQL, so unchanged rows are never decoded in Python;
- the facts of new or changed agents (usually one) are fetched by a second, small query
  and encoded once as a canonical JSON fragment, kept per process;
- the fragments are joined in key order into the `agents` object, spliced into the rest
  of the registry (tools, settings and the keys other apps add in `selectors.registry_data`).

The result is byte for byte what `canonical_json(registry_data(environment))` gives.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict

from django.db import connection

from agents_sdk.bundles.format import canonical_json
from controlplane.bundles.models import Environment
from controlplane.bundles.selectors import registry_data
from controlplane.identity.models import Agent, AgentKey

# Stands for the agents object while the rest of the registry is encoded; a NUL never
# occurs in a JSON key or value we write unescaped, so its encoding is unique.
AGENTS_PLACEHOLDER = "\x00warden-agents\x00"
_PLACEHOLDER_JSON = canonical_json(AGENTS_PLACEHOLDER)
# The same for data.warden_registry.delegation.keys (controlplane.delegation.selectors).
KEYS_PLACEHOLDER = "\x00warden-delegation-keys\x00"
_KEYS_PLACEHOLDER_JSON = canonical_json(KEYS_PLACEHOLDER)
_ENVIRONMENTS_CACHED = 16

# The agent's facts as data.warden_registry.agents[name] holds them (docs/policies.md).
# Scopes and key ids are sorted in Python, once per changed agent.
_FACTS = """
    jsonb_build_object(
        'status', a.status, 'owner', a.owner_email, 'team', a.team, 'risk_tier', a.risk_tier,
        'scopes', a.scopes, 'egress', jsonb_build_object('allow_hosts', a.egress_allow_hosts),
        'shell', jsonb_build_object('allow_commands', a.shell_allow_commands), 'sandbox', a.sandbox_profile,
        'key_ids', coalesce(
            (SELECT jsonb_agg(k.key_id ORDER BY k.key_id) FROM {keys} k WHERE k.agent_id = a.id AND k.revoked_at IS NULL),
            '[]'::jsonb))
"""
_FACTS = _FACTS.format(keys=AgentKey._meta.db_table)
_AGENTS = Agent._meta.db_table
_DIGESTS = f"SELECT a.name, md5(({_FACTS})::text) FROM {_AGENTS} a WHERE a.environments @> %s::jsonb"
_CHANGED = f"SELECT a.name, ({_FACTS})::text FROM {_AGENTS} a WHERE a.environments @> %s::jsonb AND a.name = ANY(%s)"


def _fragment(name: str, facts_text: str) -> bytes:
    facts = json.loads(facts_text)
    facts["scopes"] = sorted(facts["scopes"]) if isinstance(facts["scopes"], list) else facts["scopes"]
    facts["key_ids"] = sorted(facts["key_ids"])
    if not isinstance(facts["sandbox"], dict):
        facts["sandbox"] = {}
    return canonical_json(name) + b":" + canonical_json(facts)


class AgentsJSON:
    """Per process: for each environment, {agent name: (md5 of facts, canonical fragment)}."""

    def __init__(self) -> None:
        self._cache: OrderedDict[str, dict[str, tuple[str, bytes]]] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, environment_name: str) -> tuple[list[str], bytes]:
        """The environment's agent names (sorted) and the canonical JSON of
        data.warden_registry.agents."""
        membership = json.dumps([environment_name])
        with connection.cursor() as cursor:
            cursor.execute(_DIGESTS, [membership])
            digests = dict(cursor.fetchall())
        with self._lock:
            cached = self._cache.get(environment_name, {})
        changed = [name for name, digest in digests.items() if cached.get(name, ("", b""))[0] != digest]
        fresh: dict[str, tuple[str, bytes]] = {}
        if changed:
            with connection.cursor() as cursor:
                cursor.execute(_CHANGED, [membership, changed])
                for name, facts_text in cursor.fetchall():
                    # The digest read above may be older than these facts: keep the digest of
                    # what was encoded, so a change in between is picked up next time.
                    fresh[name] = (_md5(facts_text), _fragment(name, facts_text))
        entries = {name: fresh.get(name) or cached[name] for name in digests if name in fresh or name in cached}
        with self._lock:
            self._cache[environment_name] = entries
            self._cache.move_to_end(environment_name)
            while len(self._cache) > _ENVIRONMENTS_CACHED:
                self._cache.popitem(last=False)
        names = sorted(entries)
        return names, b"{" + b",".join(entries[name][1] for name in names) + b"}"

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


agents_json = AgentsJSON()

# A key's agent, public key and creation time never change (a key is only revoked), so its
# fragment is encoded once per process; a build reads only the ids of the current keys.
_KEY_IDS = (
    f"SELECT k.key_id FROM {AgentKey._meta.db_table} k JOIN {_AGENTS} a ON a.id = k.agent_id "
    "WHERE k.revoked_at IS NULL AND a.environments @> %s::jsonb"
)
_KEY_FACTS = (
    f"SELECT k.key_id, a.name, k.public_key, floor(extract(epoch FROM k.created_at))::bigint "
    f"FROM {AgentKey._meta.db_table} k JOIN {_AGENTS} a ON a.id = k.agent_id WHERE k.key_id = ANY(%s)"
)


class KeysJSON:
    """Per process: {key id: canonical fragment} of delegation.keys entries."""

    def __init__(self) -> None:
        self._fragments: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def encode(self, environment_name: str) -> bytes:
        with connection.cursor() as cursor:
            cursor.execute(_KEY_IDS, [json.dumps([environment_name])])
            key_ids = sorted(row[0] for row in cursor.fetchall())
        with self._lock:
            missing = [key_id for key_id in key_ids if key_id not in self._fragments]
        if missing:
            with connection.cursor() as cursor:
                cursor.execute(_KEY_FACTS, [missing])
                fresh = {
                    key_id: canonical_json(key_id) + b":" + canonical_json(
                        {"agent": agent, "public_key": public_key, "created": int(created)}
                    )
                    for key_id, agent, public_key, created in cursor.fetchall()
                }
            with self._lock:
                self._fragments.update(fresh)
        with self._lock:
            return b"{" + b",".join(self._fragments[key_id] for key_id in key_ids if key_id in self._fragments) + b"}"

    def clear(self) -> None:
        with self._lock:
            self._fragments.clear()


keys_json = KeysJSON()


def registry_json(environment: Environment) -> bytes:
    """Canonical JSON of data.warden_registry for `environment` (see the module docstring)."""
    if connection.vendor != "postgresql":  # SQLite in local development: the plain way
        return canonical_json(registry_data(environment))
    names, agents = agents_json.encode(environment.name)
    rest = canonical_json(registry_data(environment, agents=AgentsStandIn(names)))
    if rest.count(_PLACEHOLDER_JSON) != 1 or rest.count(_KEYS_PLACEHOLDER_JSON) > 1:
        raise ValueError("the registry holds a placeholder more than once")  # another value equal to it: never
    if _KEYS_PLACEHOLDER_JSON in rest:
        rest = rest.replace(_KEYS_PLACEHOLDER_JSON, keys_json.encode(environment.name))
    return rest.replace(_PLACEHOLDER_JSON, agents)


class AgentsStandIn(str):
    """What registry_data gets as `agents` during a bundle build: encodes as the placeholder
    (then replaced by the agents' JSON), iterates over the agent names as the dict would."""

    names: list[str]
    # What delegation_registry_data puts in delegation.keys: encoded here, incrementally.
    delegation_keys = KEYS_PLACEHOLDER

    def __new__(cls, names: list[str]) -> AgentsStandIn:
        stand_in = super().__new__(cls, AGENTS_PLACEHOLDER)
        stand_in.names = names
        return stand_in

    def __iter__(self):  # type: ignore[override]
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:  # type: ignore[override]
        return name in set(self.names)
