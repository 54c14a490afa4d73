"""Compiled policies: modules and data, ready to evaluate from any thread."""

from __future__ import annotations

import copy
import threading
from typing import Any

from agents_sdk.engine.errors import RegoEngineError

DEFAULT_QUERY = "data.warden.decision"


def fail_closed_decision(message: str) -> dict:
    """The decision enforcement points use when the engine cannot give one: deny."""
    return {
        "allow": False,
        "effect": "deny",
        "reasons": [{"rule": "engine-error", "message": message, "controls": ["eu_ai_act.art15(4)"]}],
        "obligations": {"log": True, "mask": []},
    }


class CompiledPolicy:
    """Rego modules plus data, compiled by one engine backend.

    Thread safety: every method may be called from any thread. The engines' objects
    are bound to the thread that made them, so each thread gets its own session
    (built on its first evaluation: modules parsed once per thread) and evaluations
    never wait on a lock. Data changes bump a generation number; each thread's session
    reloads the data at its next evaluation.
    """

    def __init__(self, backend, modules: dict[str, str], data: dict, session):
        self._backend = backend
        self._modules = dict(modules)
        self._data = data
        self._generation = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._local.session = session

    @property
    def backend_name(self) -> str:
        return self._backend.NAME

    @property
    def modules(self) -> dict[str, str]:
        return dict(self._modules)

    @property
    def data(self) -> dict:
        return copy.deepcopy(self._data)

    def evaluate(self, query_path: str = DEFAULT_QUERY, input: Any = None) -> Any:
        """Evaluate a rule (e.g. "data.warden.decision") against `input`.

        Returns the rule's value, or None when it is undefined. `input=None` is
        evaluated as an empty object. Raises RegoEvaluationError on a run-time error.
        """
        session = getattr(self._local, "session", None)
        if session is None or session.generation != self._generation:
            session = self._refresh_session(session)
        return session.evaluate(query_path, {} if input is None else input)

    def decide(self, input: Any) -> dict:
        """Evaluate data.warden.decision; any failure or non-object answer is a deny."""
        try:
            decision = self.evaluate(DEFAULT_QUERY, input)
        except RegoEngineError as exc:
            return fail_closed_decision(f"Policy evaluation failed: {exc}")
        if not isinstance(decision, dict) or "effect" not in decision:
            return fail_closed_decision("Policy gave no decision object")
        return decision

    def set_data(self, data: dict) -> None:
        """Replace all data (e.g. a newly activated bundle's data.json)."""
        if not isinstance(data, dict):
            raise TypeError("data must be a JSON object (dict)")
        with self._lock:
            self._data = copy.deepcopy(data)
            self._generation += 1

    def add_data(self, data: dict) -> None:
        """Merge `data` into the current data, objects merged key by key."""
        if not isinstance(data, dict):
            raise TypeError("data must be a JSON object (dict)")
        with self._lock:
            self._data = _merged(self._data, data)
            self._generation += 1

    def _refresh_session(self, session):
        with self._lock:
            data, generation = self._data, self._generation
        if session is None:
            session = self._backend.Session(self._modules, data)
            session.generation = generation
        else:
            session.replace_data(data, generation)
        self._local.session = session
        return session


def _merged(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
