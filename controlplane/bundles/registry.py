"""data.warden_registry as canonical JSON bytes, at a cost proportional to what changed.

At 100,000 agents the registry is tens of megabytes of JSON. Building it through the ORM
(a prefetch per agent, JSON decoding of every row) and re-encoding it on every change made
one suspension cost over half a minute. Here:

- one query returns each agent of the environment with the version of its row and of its
  keys' rows (`_VERSIONS`), so unchanged agents are never built, hashed or decoded;
- the facts of new or changed agents (usually one) are fetched by a second, small query
  and encoded once as a canonical JSON fragment, kept per process;
- the fragments are joined in key order into the `agents` object, spliced into the rest
  of the registry (tools, settings and the keys other apps add in `selectors.registry_data`),
  as runs of about CHUNK_AGENTS agents that the archive compresses once each
  (controlplane/bundles/packing.py); delegation.keys likewise, from the agents' key ids.

The result is byte for byte what `canonical_json(registry_data(environment))` gives.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from typing import NamedTuple

from django.db import connection

from agents_sdk.bundles.format import canonical_json
from controlplane.bundles.models import Environment
from controlplane.bundles.packing import Chunked, cuts_after, join_runs
from controlplane.bundles.selectors import registry_data
from controlplane.identity.models import Agent, AgentKey

# Stands for the agents object while the rest of the registry is encoded; a NUL never
# occurs in a JSON key or value we write unescaped, so its encoding is unique.
AGENTS_PLACEHOLDER = "\x00warden-agents\x00"
_PLACEHOLDER_JSON = canonical_json(AGENTS_PLACEHOLDER)
# The same for data.warden_registry.delegation.keys (controlplane.delegation.selectors).
KEYS_PLACEHOLDER = "\x00warden-delegation-keys\x00"
_KEYS_PLACEHOLDER_JSON = canonical_json(KEYS_PLACEHOLDER)
_PLACEHOLDERS = re.compile(b"(" + re.escape(_PLACEHOLDER_JSON) + b"|" + re.escape(_KEYS_PLACEHOLDER_JSON) + b")")
_ENVIRONMENTS_CACHED = 16
# Agents (and keys) per compressed run of data.json, and per query of a cold encode.
CHUNK_AGENTS = 256
_BATCH = 5000

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
# Which version of each agent row, and of its current keys' rows, the cache holds: a row
# version is (xmin, ctid), new on every INSERT and UPDATE (even one inside a single
# transaction moves the tuple), so a changed agent or key is seen without building, hashing
# or decoding anyone's facts (an md5 of the facts per agent took seconds at 100,000 agents).
_KEY_VERSIONS = "k.xmin::text || k.ctid::text, ',' ORDER BY k.key_id"
_VERSIONS = (
    f"SELECT a.name, a.xmin::text || a.ctid::text || ':' || coalesce(string_agg({_KEY_VERSIONS}), '') "
    f"FROM {_AGENTS} a LEFT JOIN {AgentKey._meta.db_table} k ON k.agent_id = a.id AND k.revoked_at IS NULL "
    "WHERE a.environments @> %s::jsonb GROUP BY a.id"
)
_VERSION = (
    f"a.xmin::text || a.ctid::text || ':' || coalesce((SELECT string_agg({_KEY_VERSIONS}) "
    f"FROM {AgentKey._meta.db_table} k WHERE k.agent_id = a.id AND k.revoked_at IS NULL), '')"
)
_CHANGED = (
    f"SELECT a.name, {_VERSION}, ({_FACTS})::text FROM {_AGENTS} a "
    "WHERE a.environments @> %s::jsonb AND a.name = ANY(%s)"
)


class _Entry(NamedTuple):
    version: str  # _VERSIONS of the rows encoded
    fragment: bytes  # "name":{facts}
    key_ids: tuple[str, ...]  # the agent's current keys (data.warden_registry.delegation.keys)
    cut: bool  # a run of data.json ends after this agent (packing.chunks_of)


def _entry(name: str, version: str, facts_text: str) -> _Entry:
    facts = json.loads(facts_text)
    facts["scopes"] = sorted(facts["scopes"]) if isinstance(facts["scopes"], list) else facts["scopes"]
    facts["key_ids"] = sorted(facts["key_ids"])
    if not isinstance(facts["sandbox"], dict):
        facts["sandbox"] = {}
    fragment = canonical_json(name) + b":" + canonical_json(facts)
    return _Entry(version, fragment, tuple(facts["key_ids"]), cuts_after(name, every=CHUNK_AGENTS))


class AgentsJSON:
    """Per process: for each environment, {agent name: _Entry}."""

    def __init__(self) -> None:
        self._cache: OrderedDict[str, dict[str, _Entry]] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, environment_name: str) -> tuple[list[str], list[bytes], list[str]]:
        """The environment's agent names (sorted), the canonical JSON of
        data.warden_registry.agents in runs of about CHUNK_AGENTS agents (packing), and the
        ids of the agents' current keys (sorted)."""
        membership = json.dumps([environment_name])
        with connection.cursor() as cursor:
            cursor.execute(_VERSIONS, [membership])
            versions = dict(cursor.fetchall())
        with self._lock:
            cached = self._cache.get(environment_name, {})
        changed = [name for name, version in versions.items() if name not in cached or cached[name].version != version]
        fresh: dict[str, _Entry] = {}
        # In batches: a cold process encodes every agent, without holding every row at once.
        for start in range(0, len(changed), _BATCH):
            with connection.cursor() as cursor:
                cursor.execute(_CHANGED, [membership, changed[start:start + _BATCH]])
                for name, version, facts_text in cursor.fetchall():
                    # Keep the version read with these facts: if the row changed since the
                    # first read, the next build sees a version other than this one.
                    fresh[name] = _entry(name, version, facts_text)
        entries = {name: fresh.get(name) or cached[name] for name in versions if name in fresh or name in cached}
        del versions, cached
        with self._lock:
            self._cache[environment_name] = entries
            self._cache.move_to_end(environment_name)
            while len(self._cache) > _ENVIRONMENTS_CACHED:
                self._cache.popitem(last=False)
        names = sorted(entries)
        runs = list(join_runs((entries[name].fragment, entries[name].cut) for name in names))
        key_ids = sorted(key_id for entry in entries.values() for key_id in entry.key_ids)
        return names, [b"{", *runs, b"}"], key_ids

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


agents_json = AgentsJSON()

# A key's agent, public key and creation time never change (a key is only revoked), so its
# fragment is encoded once per process; which keys are current comes from the agents' facts.
_KEY_FACTS = (
    f"SELECT k.key_id, a.name, k.public_key, floor(extract(epoch FROM k.created_at))::bigint "
    f"FROM {AgentKey._meta.db_table} k JOIN {_AGENTS} a ON a.id = k.agent_id WHERE k.key_id = ANY(%s)"
)


class KeysJSON:
    """Per process: {key id: (canonical fragment, cuts_after)} of delegation.keys entries."""

    def __init__(self) -> None:
        self._fragments: dict[str, tuple[bytes, bool]] = {}
        self._lock = threading.Lock()

    def encode(self, key_ids: list[str]) -> list[bytes]:
        """delegation.keys for the keys `key_ids` (sorted), in runs (packing)."""
        with self._lock:
            missing = [key_id for key_id in key_ids if key_id not in self._fragments]
        if missing:
            with connection.cursor() as cursor:
                cursor.execute(_KEY_FACTS, [missing])
                fresh = {
                    key_id: (canonical_json(key_id) + b":" + canonical_json(
                        {"agent": agent, "public_key": public_key, "created": int(created)}
                    ), cuts_after(key_id, every=CHUNK_AGENTS))
                    for key_id, agent, public_key, created in cursor.fetchall()
                }
            with self._lock:
                self._fragments.update(fresh)
        with self._lock:
            fragments = [self._fragments[key_id] for key_id in key_ids if key_id in self._fragments]
        return [b"{", *join_runs(fragments), b"}"]

    def clear(self) -> None:
        with self._lock:
            self._fragments.clear()


keys_json = KeysJSON()


def registry_json(environment: Environment) -> Chunked:
    """Canonical JSON of data.warden_registry for `environment` (see the module docstring),
    carrying its runs (packing.Chunked) so the archive compresses only the runs that changed."""
    if connection.vendor != "postgresql":  # SQLite in local development: the plain way
        return Chunked([canonical_json(registry_data(environment))])
    names, agents, key_ids = agents_json.encode(environment.name)
    rest = canonical_json(registry_data(environment, agents=AgentsStandIn(names)))
    if rest.count(_PLACEHOLDER_JSON) != 1 or rest.count(_KEYS_PLACEHOLDER_JSON) > 1:
        raise ValueError("the registry holds a placeholder more than once")  # another value equal to it: never
    keys = keys_json.encode(key_ids) if _KEYS_PLACEHOLDER_JSON in rest else []
    pieces: list[bytes] = []
    for segment in _PLACEHOLDERS.split(rest):
        pieces.extend(agents if segment == _PLACEHOLDER_JSON else keys if segment == _KEYS_PLACEHOLDER_JSON else [segment])
    return Chunked(pieces)


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
