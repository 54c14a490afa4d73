"""Compiled policies: modules and data, ready to evaluate from any thread."""

from __future__ import annotations

import copy
import itertools
import threading
import weakref
from typing import Any

from agents_sdk.engine.errors import RegoEngineError, drop_engine_frames

DEFAULT_QUERY = "data.warden.decision"


def fail_closed_decision(message: str) -> dict:
    """The decision enforcement points use when the engine cannot give one: deny."""
    return {
        "allow": False,
        "effect": "deny",
        "reasons": [{"rule": "engine-error", "message": message, "controls": ["eu_ai_act.art15(4)"]}],
        "obligations": {"log": True, "mask": []},
    }


# Each thread's engine sessions, keyed by policy. Engines may only be dropped by the
# thread that made them, so they live in the thread's own storage, not in the policy
# object (which may be garbage-collected anywhere): a thread drops the sessions of
# policies that are gone the next time it evaluates, and all of them when it exits.
_thread_sessions = threading.local()
_policy_ids = itertools.count()


def _sessions_of_this_thread() -> dict[int, tuple[weakref.ref, Any]]:
    sessions = getattr(_thread_sessions, "by_policy", None)
    if sessions is None:
        sessions = _thread_sessions.by_policy = {}
    return sessions


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
        self._id = next(_policy_ids)
        self._keep(session)

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
        try:
            entry = _sessions_of_this_thread().get(self._id)
            session = entry[1] if entry is not None else None
            if session is None or session.generation != self._generation:
                session = self._refresh_session(session)
            return session.evaluate(query_path, {} if input is None else input)
        except BaseException as exc:
            entry = session = None  # this frame stays in the traceback: it must not hold the engine either
            drop_engine_frames(exc)
            raise

    def decide(self, input: Any) -> dict:
        """Evaluate data.warden.decision; any failure or non-object answer is a deny."""
        try:
            decision = self.evaluate(DEFAULT_QUERY, input)
        except RegoEngineError as exc:
            return fail_closed_decision(f"Policy evaluation failed: {exc}")
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            # Input an engine cannot take (an object that is not JSON, a number it cannot
            # hold): still a decision, never an exception an enforcement point turns into a 500.
            return fail_closed_decision(f"Policy evaluation failed on input the engine cannot take: {type(exc).__name__}: {exc}")
        if not isinstance(decision, dict) or "effect" not in decision:
            return fail_closed_decision("Policy gave no decision object")
        return decision

    def set_data(self, data: dict, *, copied: bool = True) -> None:
        """Replace all data (e.g. a newly activated bundle's data.json). `copied=False` takes
        `data` as is, for a caller that never changes it again (a parsed bundle): a deep copy
        of a 100,000-agent registry takes seconds."""
        if not isinstance(data, dict):
            raise TypeError("data must be a JSON object (dict)")
        with self._lock:
            self._data = copy.deepcopy(data) if copied else data
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
        self._keep(session)
        return session

    def _session_of_this_thread(self):
        """This thread's engine session for the policy, or None (for tests and diagnostics)."""
        entry = _sessions_of_this_thread().get(self._id)
        return entry[1] if entry is not None else None

    def _keep(self, session) -> None:
        sessions = _sessions_of_this_thread()
        for policy_id, (policy, _) in list(sessions.items()):
            if policy() is None:
                del sessions[policy_id]  # dropped here, in the thread that made it
        sessions[self._id] = (weakref.ref(self), session)


def _merged(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
