"""The decision cache (agents_sdk.engine.decision_cache) never changes a decision.

A cached answer must equal a fresh evaluation of the input it is served for: across the
differential corpus with the time changed between the call that filled the cache and the
call it serves, after any data change (a suspension is the kill switch: never served from a
stale cache), and never for what depends on the clock (an approval grant's expiry).
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents_sdk.bundles.archive import Bundle
from agents_sdk.engine import RegoEngine, RegoEvaluationError, load_modules
from agents_sdk.engine.corpus import DATA, ORG_MODULES, SEED, corpus
from agents_sdk.engine.decision_cache import (
    _RFC3339,
    INPUT_ENCODER,
    KEY_TIME,
    MAX_KEY_CHARS,
    DecisionCache,
    cache_key,
    decision_cache_sound,
    encode_input,
)
from agents_sdk.engine.regorus_backend import Session
from agents_sdk.guard import EmbeddedBackend
from agents_sdk.tests.conftest import REPO_ROOT

PACK = {p: s for p, s in load_modules(REPO_ROOT / "rego", relative_to=REPO_ROOT).items() if not p.endswith("_test.rego")}
QUERY = "data.warden.decision"
CORPUS_SIZE = 3000


def _call(agent: str = "support-bot", tool: str = "ticket_read", args: Any = None, **context: Any) -> dict:
    return {
        "agent": {"id": agent, "name": agent, "owner": "alice@example.com"},
        "action": {"type": "tool_call", "tool": tool, "args": {"id": 7} if args is None else args},
        "context": {"session_id": "s-1", "environment": "prod", "time": "2026-01-01T00:00:00Z", **context},
    }


def _at(request: Any, moment: str) -> Any:
    """`request` with context.time set to `moment` (unchanged when it has no context object)."""
    if isinstance(request, dict) and isinstance(request.get("context"), dict) and "time" in request["context"]:
        return {**request, "context": {**request["context"], "time": moment}}
    return request


def _outcome(session: Session, request: Any) -> Any:
    try:
        return session.evaluate(QUERY, copy.deepcopy(request))
    except RegoEvaluationError as exc:
        return ("error", str(exc))


def _random_time(rng: random.Random) -> str:
    fraction = rng.choice(["", "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 9)))])
    zone = rng.choice(["Z", f"+{rng.randint(0, 14):02d}:{rng.choice(['00', '30'])}", f"-{rng.randint(0, 12):02d}:00"])
    return (f"{rng.randint(0, 9999):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}{fraction}{zone}")


@pytest.fixture(scope="module")
def sessions() -> tuple[Session, Session]:
    cached, fresh = Session(PACK, DATA), Session(PACK, DATA)
    assert cached.cache is not None, "the library should be cacheable"
    fresh.cache = None
    return cached, fresh


def test_the_library_is_cacheable_and_organisation_modules_are_not():
    assert decision_cache_sound(PACK)
    assert Session(PACK, DATA).cache is not None
    assert Session({**PACK, **ORG_MODULES}, DATA).cache is None  # organisation modules: the interpreter, no cache


def test_a_cached_decision_equals_a_fresh_one_over_the_corpus_at_other_times(sessions):
    """Each input is decided at one time (filling the cache), then served for another time
    and compared with a fresh evaluation at that other time."""
    cached, fresh = sessions
    cached.cache.clear()
    rng = random.Random(SEED)
    disagreements, served = [], 0
    for index, request in enumerate(corpus(SEED, CORPUS_SIZE)):
        first, second = _random_time(rng), _random_time(rng)
        _outcome(cached, _at(request, first))
        hits = cached.cache.hits
        answer = _outcome(cached, _at(request, second))
        served += cached.cache.hits - hits
        expected = _outcome(fresh, _at(request, second))
        if answer != expected:
            disagreements.append((index, json.dumps(request, default=repr)[:200], answer, expected))
    assert disagreements == [], f"{len(disagreements)} of {CORPUS_SIZE}: {disagreements[:3]}"
    assert served > CORPUS_SIZE * 0.8, f"only {served} of {CORPUS_SIZE} answers came from the cache"


# Context text next to the time, sorted around "time" in the context's JSON text: a credential
# or base64 run glued to it would be found or missed depending on the time, if that could happen.
NEIGHBOURS = [
    {"tima": "AKIA" + "0" * 12, "timf": "0" * 12},
    {"timez": "ASIA0123456789AB", "tim": "xoxb-"},
    {"tima": "QUtJQUlPU0ZPRE5ON0VYQU1QTEUK" * 2, "timz": "-----BEGIN RSA PRIVATE KEY-----"},
    {"tima": "QUtJQ", "timz": "UlPU0ZPRE5ON0VYQU1QTEU"},
    {"tim": "AKIAIOSFODNN7EXAMPLE"},
    {"ti": "2026-01-01T00:00:00Z" * 3},
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=st.from_regex(_RFC3339, fullmatch=True),
    second=st.from_regex(_RFC3339, fullmatch=True),
    neighbours=st.sampled_from(NEIGHBOURS),
    args=st.sampled_from([{"id": 7}, {"id": "AKIA" + "1" * 12}, {"note": "4111 1111 1111 1111"}]),
)
def test_any_rfc3339_time_decides_as_any_other(sessions, first, second, neighbours, args):
    cached, fresh = sessions
    request = _call(args=args, **neighbours)
    assert cache_key(_at(request, first)) == cache_key(_at(request, second))
    cached.evaluate(QUERY, _at(request, first))
    assert _outcome(cached, _at(request, second)) == _outcome(fresh, _at(request, second))


_JSON_LEAVES = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=30)
# Strings built to look like the context's time member: the key made from the VM's text must
# replace the context's time only, exactly as encoding the input with the key's time does.
_LOOKALIKES = st.sampled_from(["time", 'x"time', '"time":"2026-01-01T00:00:00Z"', "2026-01-01T00:00:00Z", '\\"time'])


@settings(max_examples=300, deadline=None)
@given(
    moment=st.from_regex(_RFC3339, fullmatch=True),
    args=st.recursive(
        _JSON_LEAVES | _LOOKALIKES,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8) | _LOOKALIKES, children, max_size=3),
        max_leaves=12,
    ),
    echo=st.booleans(),
    extra=st.dictionaries(st.sampled_from(["time", 'a"time', "note"]), st.text(max_size=25), max_size=2),
)
def test_the_key_made_from_the_vms_text_is_the_key_encoded_on_its_own(moment, args, echo, extra):
    """Session.evaluate encodes an input once and makes the key from that text."""
    request = _at(_call(args={"a": args, **extra}), moment)
    if echo:  # the context's own time member elsewhere in the input: the text must be re-encoded
        request["action"]["args"]["time"] = moment
    text = INPUT_ENCODER.encode(request)
    assert cache_key(request, text) == cache_key(request)
    key = cache_key(request)
    assert key is None or key == INPUT_ENCODER.encode(_at(request, KEY_TIME))


def _encoded_or_error(encode: Any, value: Any) -> Any:
    try:
        return encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        return type(exc), str(exc)


def test_encode_input_gives_the_encoders_text_and_errors():
    """The VM's input text comes from the prebuilt C encoder: the same text as INPUT_ENCODER,
    and the same refusals (a cycle, NaN, bytes, a set) with the same messages."""
    cyclic: dict = {"a": 1}
    cyclic["self"] = cyclic
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    for value in [_call(), _call(args={"é": "\ud800", 1: 2.5, "n": None, "t": (1, 2)}), "x", 1, [], cyclic,
                  {"x": float("nan")}, {"x": b"b"}, {"x": {1, 2}}, {(1,): 2}, deep]:
        assert _encoded_or_error(encode_input, value) == _encoded_or_error(INPUT_ENCODER.encode, value), value


def test_a_time_that_is_not_rfc3339_stays_in_the_key():
    request = _call()
    for odd in ["2026-01-01T00:00:00Z\n", "2026-01-01T00:00:00ZAKIA", "２０２６-01-01T00:00:00Z", "2026-01-01 00:00:00Z", 1]:
        assert cache_key(_at(request, odd)) != cache_key(request), odd
    assert KEY_TIME in (cache_key(request) or "")


def test_inputs_presenting_an_approval_token_are_never_cached(sessions):
    """A grant's expiry reads the clock (time.now_ns()): the same input may be allowed now
    and refused a second later."""
    cached, _ = sessions
    cached.cache.clear()
    request = _call(tool="payment_create", args={"amount": 5}, approval_token="apr-valid")
    assert cache_key(request) is None
    hits = cached.cache.hits
    for _ in range(2):
        cached.evaluate(QUERY, request)
    assert len(cached.cache) == 0 and cached.cache.hits == hits


def _suspended(data: dict) -> dict:
    data = copy.deepcopy(data)
    data["warden_registry"]["agents"]["support-bot"]["status"] = "suspended"
    return data


def _allow_then_cached(policy) -> dict:
    request = _call()
    assert policy.decide(request)["effect"] == "allow"
    session = policy._session_of_this_thread()
    hits = session.cache.hits
    assert policy.decide(_at(request, "2026-06-01T10:00:00.5+02:00"))["effect"] == "allow"
    assert session.cache.hits == hits + 1, "the second decision should have come from the cache"
    return request


@pytest.mark.parametrize("change", ["set_data", "add_data"])
def test_a_suspension_is_never_served_from_the_cache(change):
    policy = RegoEngine("regorus").compile(PACK, DATA)
    request = _allow_then_cached(policy)
    if change == "set_data":
        policy.set_data(_suspended(DATA))
    else:
        policy.add_data({"warden_registry": {"agents": {"support-bot": {"status": "suspended"}}}})
    decision = policy.decide(request)
    assert decision["effect"] == "deny"
    assert "agent-not-active" in [reason["rule"] for reason in decision["reasons"]]


def test_a_new_bundle_suspending_the_agent_is_never_served_from_the_cache():
    backend = EmbeddedBackend.from_modules(PACK, DATA)
    request = _allow_then_cached(backend.policy)
    bundle = Bundle(revision="r2", roots=("",), manifest={"revision": "r2"}, modules=PACK, data=_suspended(DATA),
                    files=(), archive=b"")
    backend.activate(bundle)
    decision, _ = backend.decide(request)
    assert decision["effect"] == "deny" and decision["reasons"][0]["rule"] == "agent-not-active"
    backend.activate(replace(bundle, revision="r3", data=DATA))
    assert backend.decide(request)[0]["effect"] == "allow"


def test_served_decisions_are_copies_a_caller_cannot_poison(sessions):
    cached, _ = sessions
    cached.cache.clear()
    request = _call(tool="file_delete", args={"path": "/prod/x"})
    first = cached.evaluate(QUERY, request)
    first["effect"] = "allow"
    first["reasons"].clear()
    second = cached.evaluate(QUERY, request)
    assert cached.cache.hits >= 1
    assert second["effect"] != "allow" and second["reasons"]


def test_a_library_reading_time_or_the_outside_world_is_not_cacheable():
    approvals = next(path for path in PACK if path.endswith("approvals.rego"))
    reads_time = 'business_hours if { t := time.parse_rfc3339_ns(input.context.time); t > 0 }'
    assert not decision_cache_sound({**PACK, "warden/hours.rego": f"package warden\nimport rego.v1\n{reads_time}\n"})
    assert not decision_cache_sound({**PACK, approvals: PACK[approvals] + '\nx := input.context["time"]\n'})
    assert not decision_cache_sound({**PACK, "warden/ext.rego": 'package warden\nimport rego.v1\nr := http.send({"method": "GET", "url": "http://x"})\n'})
    assert not decision_cache_sound({**PACK, approvals: PACK[approvals] + "\nnow := time.now_ns()\n"})


def test_the_cache_is_bounded():
    cache = DecisionCache(max_entries=2)
    for key in ("a", "b", "c"):
        cache.put(key, {"effect": key})
    assert len(cache) == 2 and cache.get("a") is None and cache.get("c") == {"effect": "c"}
    assert cache_key(_call(args={"text": "x" * MAX_KEY_CHARS})) is None
