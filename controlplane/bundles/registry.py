"""data.warden_registry as canonical JSON bytes, at a cost proportional to what changed.

At 100,000 agents the registry is tens of megabytes of JSON. Building it through the ORM
(a prefetch per agent, JSON decoding of every row) and re-encoding it on every change made
one suspension cost over half a minute. Here:

- the agents written since the last encode are read from the change feed the database keeps
  (identity.AgentChange, filled by triggers in the writing transactions; `_FEED`), so a
  suspension reads one agent, whatever the registry's size; when the feed cannot be trusted
  (the first encode, one older than AGENT_CHANGES_TRUSTED, one that read its own uncommitted
  writes), one query returns each agent of the environment with the version of its row and
  of its keys' rows (`_VERSIONS`), so unchanged agents are never built, hashed or decoded;
- the facts of new or changed agents (usually one) are fetched by a second, small query
  and encoded once as a canonical JSON fragment;
- the fragments live, in key order, in runs of about CHUNK_AGENTS agents of the `agents`
  object (packing.RunList, per process and environment): a change rebuilds the run that
  holds the agent, and every other run stays the same object, hashed and compressed once
  (controlplane/bundles/packing.py); delegation.keys likewise, by key id, read from the key
  rows only for keys that appear;
- the runs are spliced into the rest of the registry (tools, settings and the keys other
  apps add in `selectors.registry_data`), encoded afresh each time (small).

The result is byte for byte what `canonical_json(registry_data(environment))` gives, as
`packing.Pieces` (never joined for a build). `agents_json.last_changes(env)` tells which
entries the last encode changed (old and new fragments), for delta bundles.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from datetime import timedelta
from typing import NamedTuple

from django.db import connection
from django.utils import timezone

from agents_sdk.bundles.format import canonical_json
from controlplane.bundles.models import Environment
from controlplane.bundles.packing import Pieces, RunList
from controlplane.bundles.selectors import registry_data
from controlplane.identity.models import Agent, AgentChange, AgentKey

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
# "<agent row>:<key row>;<key row>…" (a ctid holds a comma), the keys' versions in byte order. _VERSIONS is a flat
# join (one row per agent and key), grouped in Python: grouping 100,000 rows in the query
# sorted them on disk and took three times as long.
_KEY_VERSION = "k.xmin::text || k.ctid::text"
_VERSIONS = (
    f"SELECT a.name, a.xmin::text || a.ctid::text || ':' || coalesce({_KEY_VERSION}, '') "
    f"FROM {_AGENTS} a LEFT JOIN {AgentKey._meta.db_table} k ON k.agent_id = a.id AND k.revoked_at IS NULL "
    "WHERE a.environments @> %s::jsonb"
)
_VERSION = (
    f"a.xmin::text || a.ctid::text || ':' || coalesce((SELECT string_agg({_KEY_VERSION}, ';' "
    f"ORDER BY {_KEY_VERSION} COLLATE \"C\") FROM {AgentKey._meta.db_table} k "
    "WHERE k.agent_id = a.id AND k.revoked_at IS NULL), '')"
)


def _versions(rows) -> dict[str, str]:
    """{agent name: version} from the rows of _VERSIONS, as _VERSION spells them."""
    versions: dict[str, str] = {}
    for name, version in rows:
        seen = versions.get(name)
        if seen is not None:  # an agent with several keys: one row per key
            head, _, keys = seen.partition(":")
            version = head + ":" + ";".join(sorted([*keys.split(";"), version.partition(":")[2]]))
        versions[name] = version
    return versions


# Every agent of the environment in key order (bytes, as Python sorts str): a cold encode.
_ALL = (
    f"SELECT a.name, {{version}}, ({_FACTS})::text FROM {_AGENTS} a "
    "WHERE a.environments @> %s::jsonb ORDER BY a.name COLLATE \"C\""
)
_CHANGED = (
    f"SELECT a.name, {_VERSION}, ({_FACTS})::text FROM {_AGENTS} a "
    "WHERE a.environments @> %s::jsonb AND a.name = ANY(%s)"
)
_ALL = _ALL.format(version=_VERSION)

# The change feed (identity.AgentChange). A snapshot (pg_current_snapshot) is taken with each
# read; the next read lists the agents written by transactions that snapshot did not see
# committed (an index range from its xmin), by the transaction the snapshot was taken in (a
# snapshot counts its own transaction as seen), and by the current one. Rows are pruned after
# AGENT_CHANGES_KEPT; a snapshot older than AGENT_CHANGES_TRUSTED is not used.
AGENT_CHANGES_TRUSTED = 6 * 3600
AGENT_CHANGES_KEPT = 24 * 3600
_CHANGE_TABLE = AgentChange._meta.db_table
_OWN_XID = "pg_current_xact_id_if_assigned()::text::bigint"
_SNAPSHOT = (
    f"SELECT pg_current_snapshot()::text, {_OWN_XID}, "
    f"EXISTS (SELECT 1 FROM {_CHANGE_TABLE} c WHERE c.xid = {_OWN_XID})"
)
_FEED = (
    f"{_SNAPSHOT}, ARRAY(SELECT c.agent_name FROM {_CHANGE_TABLE} c "
    "WHERE c.xid >= pg_snapshot_xmin(%(snapshot)s::pg_snapshot)::text::bigint "
    "AND NOT pg_visible_in_snapshot(c.xid::text::xid8, %(snapshot)s::pg_snapshot) "
    f"UNION SELECT c.agent_name FROM {_CHANGE_TABLE} c WHERE c.xid = %(xid)s OR c.xid = {_OWN_XID})"
)


class Snapshot(NamedTuple):
    """Where the feed was last read: the database snapshot, the xid of the transaction it was
    taken in (None: none assigned), and when."""

    snapshot: str
    xid: int | None
    taken: float  # this process's clock (time.time()), to tell its age


def _take_snapshot(cursor, query: str, params=None) -> tuple[Snapshot | None, list[str] | None]:
    """(the snapshot to read the feed from next, or None when this read saw the current
    transaction's own writes: they may roll back, so the next read lists every version;
    the names of the agents the feed lists, when `query` is _FEED)."""
    cursor.execute(query, params)
    row = cursor.fetchone()
    snapshot = None if row[2] else Snapshot(row[0], row[1], time.time())
    return snapshot, (list(row[3]) if len(row) > 3 else None)


def _entry(name: str, facts_text: str) -> tuple[bytes, tuple[str, ...]]:
    """(the agent's fragment "name":{facts}, its current key ids)."""
    facts = json.loads(facts_text)
    facts["scopes"] = sorted(facts["scopes"]) if isinstance(facts["scopes"], list) else facts["scopes"]
    facts["key_ids"] = sorted(facts["key_ids"])
    if not isinstance(facts["sandbox"], dict):
        facts["sandbox"] = {}
    return canonical_json(name) + b":" + canonical_json(facts), tuple(facts["key_ids"])


class Changes(NamedTuple):
    """What one encode changed in an environment's registry: {agent name: (old fragment,
    new fragment)} and the same for delegation.keys by key id (None: absent)."""

    agents: dict[str, tuple[bytes | None, bytes | None]]
    keys: dict[str, tuple[bytes | None, bytes | None]]


class _Environment:
    """One environment's encoded agents: the row versions encoded, the agents' key ids,
    and data.warden_registry.agents and .delegation.keys as runs (packing.RunList)."""

    def __init__(self) -> None:
        self.versions: dict[str, str] = {}
        self.key_ids: dict[str, tuple[str, ...]] = {}
        self.agents = RunList(every=CHUNK_AGENTS)
        self.keys = RunList(every=CHUNK_AGENTS)
        self.lock = threading.Lock()
        self.last_changes: Changes | None = None
        self.snapshot: Snapshot | None = None  # where to read the change feed from next
        self.names: frozenset[str] | None = None  # frozenset(versions), made again only when an agent comes or goes

    def agent_names(self) -> frozenset[str]:
        if self.names is None or len(self.names) != len(self.versions):
            self.names = frozenset(self.versions)
        return self.names


class AgentsJSON:
    """Per process: for each environment, its encoded agents (`_Environment`)."""

    def __init__(self) -> None:
        self._cache: OrderedDict[str, _Environment] = OrderedDict()
        self._lock = threading.Lock()

    def _environment(self, name: str) -> _Environment:
        with self._lock:
            state = self._cache.get(name)
            if state is None:
                state = self._cache[name] = _Environment()
            self._cache.move_to_end(name)
            while len(self._cache) > _ENVIRONMENTS_CACHED:
                self._cache.popitem(last=False)
        return state

    def encode(self, environment_name: str) -> tuple[frozenset[str], list[bytes], list[bytes]]:
        """The environment's agent names, and the canonical
        JSON of data.warden_registry.agents and of .delegation.keys, in runs of about
        CHUNK_AGENTS entries (packing.RunList). Work beyond reading the row versions is
        proportional to the agents that changed since this process last encoded them."""
        state = self._environment(environment_name)
        with state.lock:
            try:
                return self._encode(environment_name, state)
            except BaseException:  # a half-applied change must not be served later: start over
                with self._lock:
                    self._cache.pop(environment_name, None)
                raise

    def _encode(self, environment_name: str, state: _Environment) -> tuple[frozenset[str], list[bytes], list[bytes]]:
        membership = json.dumps([environment_name])
        if not state.versions:
            with connection.cursor() as cursor:  # before reading: later writes are in the next feed
                state.snapshot, _ = _take_snapshot(cursor, _SNAPSHOT)
            self._encode_all(membership, state)
            return state.agent_names(), state.agents.pieces, state.keys.pieces
        known = state.versions
        changed, removed = self._changed_by_feed(state)
        if changed is None:
            with connection.cursor() as cursor:
                state.snapshot, _ = _take_snapshot(cursor, _SNAPSHOT)
                cursor.execute(_VERSIONS, [membership])
                versions = _versions(cursor.fetchall())
            changed = [name for name, version in versions.items() if known.get(name) != version]
            added = sum(1 for name in changed if name not in known)
            # Agents that left the environment (or were deleted): looked for only when there are some.
            removed = [name for name in known if name not in versions] if len(known) + added > len(versions) else []
        agent_changes: dict[str, bytes | None] = dict.fromkeys(removed)
        key_ids: dict[str, tuple[str, ...] | None] = dict.fromkeys(removed)
        fresh_versions: dict[str, str] = {}
        # In batches: a change of many agents at once is not read in one result.
        for start in range(0, len(changed), _BATCH):
            with connection.cursor() as cursor:
                cursor.execute(_CHANGED, [membership, changed[start:start + _BATCH]])
                for name, version, facts_text in cursor.fetchall():
                    # Keep the version read with these facts: if the row changed since the
                    # first read, the next build sees a version other than this one.
                    agent_changes[name], key_ids[name] = _entry(name, facts_text)
                    fresh_versions[name] = version
        for name in changed:  # left the environment (between the two reads, or written by the feed's list)
            if name not in fresh_versions and name in known:
                agent_changes[name], key_ids[name] = None, None
        old_keys = {key_id for name in key_ids for key_id in state.key_ids.get(name, ())}
        new_keys = {key_id for ids in key_ids.values() for key_id in ids or ()}
        key_changes: dict[str, bytes | None] = dict.fromkeys(old_keys - new_keys)
        key_changes.update(keys_json.fragments(sorted(new_keys - old_keys)))
        agents_changed = state.agents.update(agent_changes)
        keys_changed = state.keys.update(key_changes)
        if any((ids is None) == (name in state.versions) for name, ids in key_ids.items()):
            state.names = None  # an agent came or went
        for name, ids in key_ids.items():
            if ids is None:
                state.versions.pop(name, None)
                state.key_ids.pop(name, None)
            else:
                state.versions[name] = fresh_versions[name]
                state.key_ids[name] = ids
        state.last_changes = Changes(agents_changed, keys_changed)
        # Never the dict's keys: another build may change them once the lock is released.
        return state.agent_names(), state.agents.pieces, state.keys.pieces

    def _changed_by_feed(self, state: _Environment) -> tuple[list[str] | None, list[str]]:
        """(the agents written since the last read, to read again; []), or (None, []) when the
        feed cannot tell (then every version is listed)."""
        previous = state.snapshot
        state.snapshot = None  # until this read is done: a failure below must not skip writes
        if previous is None:
            return None, []
        with connection.cursor() as cursor:
            snapshot, names = _take_snapshot(cursor, _FEED, {"snapshot": previous.snapshot, "xid": previous.xid})
        if names is None or "" in names or time.time() - previous.taken > AGENT_CHANGES_TRUSTED:
            return None, []  # a TRUNCATE, or rows may have been pruned since: list the versions
        # None (the feed listed our own writes, which may roll back): the next read lists the versions.
        state.snapshot = snapshot
        return sorted(set(names)), []

    def _encode_all(self, membership: str, state: _Environment) -> None:
        """Every agent, streamed in key order into the runs (a server-side cursor, batches of
        _BATCH rows): the encoded registry is never held twice, nor the rows all at once."""

        def agents():
            with connection.chunked_cursor() as cursor:
                cursor.execute(_ALL, [membership])
                while rows := cursor.fetchmany(_BATCH):
                    for name, version, facts_text in rows:
                        fragment, state.key_ids[name] = _entry(name, facts_text)
                        state.versions[name] = version
                        yield name, fragment

        state.agents.build(agents())
        key_ids = sorted(key_id for ids in state.key_ids.values() for key_id in ids)
        fragments = keys_json.fragments(key_ids)
        state.keys.build((key_id, fragments.pop(key_id)) for key_id in key_ids if key_id in fragments)
        state.last_changes = None  # everything was encoded: what changed is not known

    def last_changes(self, environment_name: str) -> Changes | None:
        """What the last encode of this environment in this process changed since the one
        before it (see `Changes`); None when it encoded everything (a cold encode) or none."""
        with self._lock:
            state = self._cache.get(environment_name)
        return state.last_changes if state is not None else None

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


agents_json = AgentsJSON()


def prune_agent_changes() -> int:
    """Delete change-feed rows older than AGENT_CHANGES_KEPT (the reconcile job calls this);
    returns how many. A process that last read the feed before them lists every version."""
    cutoff = timezone.now() - timedelta(seconds=AGENT_CHANGES_KEPT)
    return AgentChange.objects.filter(created_at__lt=cutoff).delete()[0]

# A key's agent, public key and creation time never change (a key is only revoked), so its
# fragment is read when the key appears in an environment's registry, and kept in its runs.
_KEY_FACTS = (
    f"SELECT k.key_id, a.name, k.public_key, floor(extract(epoch FROM k.created_at))::bigint "
    f"FROM {AgentKey._meta.db_table} k JOIN {_AGENTS} a ON a.id = k.agent_id WHERE k.key_id = ANY(%s)"
)


class KeysJSON:
    """delegation.keys entries, encoded from the key rows."""

    def fragments(self, key_ids: list[str]) -> dict[str, bytes]:
        """{key id: canonical fragment "key_id":{...}} of these keys (those that exist)."""
        fragments: dict[str, bytes] = {}
        for start in range(0, len(key_ids), _BATCH):
            with connection.cursor() as cursor:
                cursor.execute(_KEY_FACTS, [key_ids[start:start + _BATCH]])
                for key_id, agent, public_key, created in cursor.fetchall():
                    fragments[key_id] = canonical_json(key_id) + b":" + canonical_json(
                        {"agent": agent, "public_key": public_key, "created": int(created)}
                    )
        return fragments

    def clear(self) -> None:
        """Nothing is kept between builds (the environments' runs hold the fragments)."""


keys_json = KeysJSON()


def registry_json(environment: Environment) -> Pieces:
    """Canonical JSON of data.warden_registry for `environment` (see the module docstring),
    as runs (packing.Pieces) that the archive hashes and compresses only where they changed."""
    if connection.vendor != "postgresql":  # SQLite in local development: the plain way
        return Pieces([canonical_json(registry_data(environment))], lineage=environment.name)
    names, agents, keys = agents_json.encode(environment.name)
    rest = canonical_json(registry_data(environment, agents=AgentsStandIn(names)))
    if rest.count(_PLACEHOLDER_JSON) != 1 or rest.count(_KEYS_PLACEHOLDER_JSON) > 1:
        raise ValueError("the registry holds a placeholder more than once")  # another value equal to it: never
    pieces: list[bytes] = []
    for segment in _PLACEHOLDERS.split(rest):
        pieces.extend(agents if segment == _PLACEHOLDER_JSON else keys if segment == _KEYS_PLACEHOLDER_JSON else [segment])
    return Pieces(pieces, lineage=environment.name)


class AgentsStandIn(str):
    """What registry_data gets as `agents` during a bundle build: encodes as the placeholder
    (then replaced by the agents' JSON), iterates over the agent names as the dict would
    (in no particular order)."""

    names: frozenset[str]
    # What delegation_registry_data puts in delegation.keys: encoded here, incrementally.
    delegation_keys = KEYS_PLACEHOLDER

    def __new__(cls, names: frozenset[str]) -> AgentsStandIn:
        stand_in = super().__new__(cls, AGENTS_PLACEHOLDER)
        stand_in.names = names
        return stand_in

    def __iter__(self):  # type: ignore[override]
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:  # type: ignore[override]
        return name in self.names
