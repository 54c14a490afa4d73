"""The data document as JSON text for regorus' compiled VM, re-encoding only what changed.

The VM takes its data as one JSON text (`Rvm.set_data_json`). Encoding a 100,000-agent
registry takes a quarter to half a second, on every registry change. But a new bundle's data
shares every unchanged object with the previous one: a delta is applied copy-on-write
(agents_sdk.bundles.delta.apply_patch) and several bundles are merged the same way
(agents_sdk.bundles.multi). So the text of each member of the memoised objects (the registry's
agents, tools, ...) is kept with the object it was made from, and reused while the new
document holds that very object: one suspension re-encodes one agent, plus a join of the
unchanged texts. The levels above them (the root, the registry) keep the texts of their other
members only: the text of an object below is joined again from its own state, not kept once
more per level (at 100,000 agents that kept the registry's 24 MB text three times over).

This relies on what the engine already requires: data given to a policy is never changed in
place afterwards (CompiledPolicy.set_data copies it, or takes a parsed bundle's data that
nothing changes). The text equals `json.dumps(data)`.
"""

from __future__ import annotations

import json
import threading
from itertools import compress, count
from operator import is_not
from typing import Any

from agents_sdk.errors import WardenError

# Members of objects this deep (the document root is 0) are memoised; below, each member's
# value is encoded whole. The registry's agents (data.warden_registry.agents.<name>) are
# members at depth 2.
_MEMO_DEPTH = 3

_ENCODER = json.JSONEncoder()  # json.dumps' defaults: the text the VM was always given


class _NotPlain(WardenError):
    """A key json.dumps would convert (not a str): encode the document the plain way."""


class DataEncoder:
    """JSON text of successive data documents, reusing the text of unchanged members."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[Any, str] | None = None
        # Per object of the top levels, by its path of keys: the object (held, so none of its
        # members' ids can be taken by another object), its keys and its members' texts ("" for
        # a member that is an object above the memoised level: see _upper_members).
        self._states: dict[tuple[str, ...], tuple[dict, list[str], list[str]]] = {}

    def encode(self, data: Any) -> str:
        """`json.dumps(data)`. Raises TypeError or ValueError where json.dumps does."""
        with self._lock:
            last = self._last
            if last is not None and last[0] is data:
                return last[1]  # several threads' sessions load the same data
            states: dict[tuple[str, ...], tuple[dict, list[str], list[str]]] = {}
            try:
                text = self._encode(data, (), states)
            except _NotPlain:
                text = json.dumps(data)
            # Objects the new document still holds keep their states (unchanged, not visited);
            # the others are dropped with what they hold.
            for path, state in self._states.items():
                if path not in states and _at(data, path) is state[0]:
                    states[path] = state
            self._states = states
            self._last = (data, text)
            return text

    def _encode(self, value: Any, path: tuple[str, ...], states: dict) -> str:
        if not isinstance(value, dict) or len(path) >= _MEMO_DEPTH or not value:
            return _ENCODER.encode(value)
        keys = list(value)
        values = list(value.values())
        if not set(map(type, keys)) <= {str}:
            raise _NotPlain
        old = self._states.get(path)
        if len(path) + 1 < _MEMO_DEPTH:
            kept, texts = self._upper_members(keys, values, path, old, states)
            states[path] = (value, keys, kept)
            return "{" + ", ".join(texts) + "}"
        if old is None:
            texts = _members(keys, values)
        elif old[1] == keys:
            # The same keys in the same order (a replace): find the members that are other
            # objects with C loops, so one change among 100,000 agents costs one encoding.
            changed = list(compress(count(), map(is_not, values, old[0].values())))
            if len(changed) > len(keys) // 8:
                texts = _members(keys, values)  # a snapshot: new objects throughout
            elif changed:
                texts = old[2].copy()
                for index in changed:
                    texts[index] = self._member(keys[index], values[index], path, states)
            else:
                texts = old[2]
        else:  # members added or removed
            # No tuple per member: 100,000 new containers would set off the cyclic garbage
            # collector over the whole registry, several times.
            old_keys, old_texts = old[1], old[2]
            old_values = list(old[0].values())
            position = dict(zip(old_keys, range(len(old_keys)), strict=True))
            texts = []
            for key, member in zip(keys, values, strict=True):
                index = position.get(key)
                if index is not None and old_values[index] is member:
                    texts.append(old_texts[index])
                else:
                    texts.append(self._member(key, member, path, states))
        states[path] = (value, keys, texts)
        return "{" + ", ".join(texts) + "}"

    def _upper_members(
        self, keys: list[str], values: list[Any], path: tuple[str, ...], old: Any, states: dict
    ) -> tuple[list[str], list[str]]:
        """(texts to keep, texts) of the members of an object above the memoised level (the
        root, the registry: a few members). An object member is made from its own state each
        time and its text is not kept ("" in its place): keeping it here held the whole
        registry's text once more per level (~24 MB each at 100,000 agents)."""
        previous: dict[str, tuple[Any, str]] = {}
        if old is not None:
            previous = {key: (member, text) for key, member, text in zip(old[1], old[0].values(), old[2], strict=True) if text}
        kept, texts = [], []
        for key, member in zip(keys, values, strict=True):
            if isinstance(member, dict) and member:
                kept.append("")
                texts.append(self._member(key, member, path, states))
                continue
            known = previous.get(key)
            text = known[1] if known is not None and known[0] is member else self._member(key, member, path, states)
            kept.append(text)
            texts.append(text)
        return kept, texts

    def _member(self, key: str, value: Any, path: tuple[str, ...], states: dict) -> str:
        return _ENCODER.encode(key) + ": " + self._encode(value, (*path, key), states)


def _members(keys: list[str], values: list[Any]) -> list[str]:
    """Every member's text, in C loops (as fast as json.dumps of the object)."""
    return list(map("{}: {}".format, map(_ENCODER.encode, keys), map(_ENCODER.encode, values)))


def _at(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


_shared = DataEncoder()


def data_json(data: Any) -> str:
    """`json.dumps(data)`, shared by every session (one text per data document, made once for
    all threads) and incremental across documents."""
    return _shared.encode(data)
