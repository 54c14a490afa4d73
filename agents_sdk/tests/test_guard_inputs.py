"""Hostile inputs at the Guard: every one is a fail-closed ``malformed-input`` deny that
names the field, is signed like any other decision, and never reaches the engine."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents_sdk.engine.decision_cache import encode_input
from agents_sdk.guard import EmbeddedBackend, Guard, input_problem
from agents_sdk.guard.inputs import encoded_input
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from agents_sdk.tests.conftest import REPO_ROOT
from agents_sdk.tests.signed_bundles import library_modules, registry
from agents_sdk.verify import verify_records

from .test_fuzz import JSON_LIKE, TEXT


@pytest.fixture(scope="module")
def backend() -> EmbeddedBackend:
    return EmbeddedBackend.from_modules(library_modules(), registry())


@pytest.fixture
def support_bot() -> AgentIdentity:
    return AgentIdentity.create("support-bot", "alice@example.com", ["read:tickets", "write:files", "net:http"])


class CountingBackend:
    """The real engine, counting what reaches it."""

    def __init__(self, inner: EmbeddedBackend):
        self.inner = inner
        self.calls = 0

    def decide(self, input, *, timeout=None):
        self.calls += 1
        return self.inner.decide(input, timeout=timeout)

    def close(self):
        pass


def deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


HOSTILE = [
    ({"path": "\ud800"}, "/action/args/path contains a lone surrogate (U+D800)"),
    ({"path": "ok", "nested": {"x": ["a", "\udfff b"]}}, "/action/args/nested/x/1 contains a lone surrogate"),
    ({"\ud83d": 1}, "/action/args has a key that contains a lone surrogate"),
    ({"cmd": "rm\x00 -rf"}, "/action/args/cmd contains U+0000 (NUL)"),
    ({"a\x00": 1}, "/action/args has a key that contains U+0000"),
    ({"n": 10**400}, "/action/args/n is an integer outside the signed 64-bit range"),
    ({"n": 2**64}, "/action/args/n is an integer outside the signed 64-bit range"),
    ({"n": float("inf")}, "/action/args/n is inf, which is not a JSON number"),
    ({"n": float("nan")}, "/action/args/n is nan"),
    ({"blob": b"bytes"}, "/action/args/blob is a bytes, not a JSON value"),
    ({"tags": {"a", "b"}}, "/action/args/tags is a set, not a JSON value"),
    ({"when": object()}, "/action/args/when is a object, not a JSON value"),
    ({1: "x"}, "/action/args has a key of type int"),
    ({"tree": deep(100_000)}, "is nested more than 64 levels deep"),
    ({"big": "x" * (2 * 1024 * 1024)}, "larger than 1048576 bytes"),
    ({"a/b": {"c~d": "\ud800"}}, "/action/args/a~1b/c~0d contains a lone surrogate"),
]


@pytest.mark.parametrize("args, message", HOSTILE, ids=range(len(HOSTILE)))
def test_a_hostile_argument_is_a_signed_malformed_input_deny_that_names_the_field(support_bot, backend, args, message):
    counting = CountingBackend(backend)
    signer = ActionSigner(support_bot)
    guard = Guard(support_bot, counting, environment="prod", signer=signer)
    decision = guard.check("file_read", args)
    assert decision.effect == "deny" and decision.rule == "malformed-input"
    assert message in decision.reasons[0].message
    assert counting.calls == 0  # the engine never saw it
    records = signer.session_log()
    assert [r["kind"] for r in records] == ["intent", "decision"]
    assert records[0]["payload"] == {"tool": "file_read", "args": {}}
    assert records[1]["payload"]["reasons"][0]["rule"] == "malformed-input"
    assert verify_records(records, {support_bot.key_id: support_bot.public_key_b64}).ok


@pytest.mark.parametrize(
    "tool, message",
    [("", "non-empty string"), (7, "non-empty string"), (None, "non-empty string"), ("read\ud800", "/action/tool contains")],
)
def test_a_bad_tool_name_is_refused_and_still_signed(support_bot, backend, tool, message):
    signer = ActionSigner(support_bot)
    decision = Guard(support_bot, backend, signer=signer).check(tool, {})
    assert decision.rule == "malformed-input" and message in decision.reasons[0].message
    assert verify_records(signer.session_log(), {support_bot.key_id: support_bot.public_key_b64}).ok


def test_hostile_context_is_refused_and_signed_in_the_guards_own_session(support_bot, backend):
    signer = ActionSigner(support_bot)
    guard = Guard(support_bot, backend, signer=signer, session_id="s-own")
    decision = guard.check("ticket_read", {"ticket_id": 1}, session_id="s-\ud800", approval_token="\x00")
    assert decision.rule == "malformed-input" and "/context/" in decision.reasons[0].message
    assert {r["session_id"] for r in signer.session_log()} == {"s-own"}


def test_arguments_that_are_not_an_object_are_refused(support_bot, backend):
    guard = Guard(support_bot, backend)
    decision = guard.check("ticket_read", ["not", "an", "object"])  # type: ignore[arg-type]
    assert decision.rule == "malformed-input" and "/action/args is a list" in decision.reasons[0].message


def test_limits_are_configurable_per_guard(support_bot, backend):
    strict = Guard(support_bot, backend, max_input_depth=5, max_input_bytes=2000)
    assert strict.check("ticket_read", {"a": [[[[1]]]]}).rule == "malformed-input"
    assert strict.check("ticket_read", {"a": "x" * 3000}).rule == "malformed-input"
    assert strict.check("ticket_read", {"ticket_id": 7}).allow


def test_valid_unicode_large_ints_and_moderate_depth_still_reach_the_policy(support_bot, backend):
    guard = Guard(support_bot, backend, environment="prod")
    args = {"ticket_id": 2**63 - 1, "note": "Grüße 😀 \u200b", "tree": deep(10), "ratio": 1e300}
    assert input_problem({"args": args}) is None
    assert guard.check("ticket_read", args).allow


def test_the_decorator_refuses_hostile_arguments_without_running_the_tool(support_bot, backend):
    guard = Guard(support_bot, backend, environment="prod")
    ran = []

    @guard.tool
    def ticket_read(ticket_id: object) -> str:
        ran.append(ticket_id)
        return "ok"

    from agents_sdk.errors import PolicyViolationError

    with pytest.raises(PolicyViolationError, match="malformed-input: /action/args/ticket_id contains a lone surrogate"):
        ticket_read("\udc80")
    assert ran == []


def test_a_lone_surrogate_no_longer_kills_the_process():
    """The original report: json.loads('"\\ud800"') in tool arguments segfaulted Guard.check."""
    script = textwrap.dedent(
        """
        import json
        from agents_sdk.guard import EmbeddedBackend, Guard
        from agents_sdk.identity import AgentIdentity
        from agents_sdk.tests.signed_bundles import library_modules, registry
        guard = Guard(AgentIdentity.create("support-bot", "a@example.com", ["read:tickets"]),
                      EmbeddedBackend.from_modules(library_modules(), registry()))
        print(guard.check("file_read", {"path": json.loads('"\\ud800"')}).reasons[0].rule)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "malformed-input"


def test_input_problem_walks_a_hostile_depth_without_recursion():
    value = deep(1_000_000)
    assert "nested more than 64 levels" in input_problem(value)


def test_a_refused_call_with_a_broken_tool_name_is_signed_end_to_end(support_bot, backend):
    """govern → refusal → result record: every record stays signable (the MCP proxy hung here)."""
    from agents_sdk.integrations import govern

    signer = ActionSigner(support_bot)
    guard = Guard(support_bot, backend, signer=signer)
    call = govern(guard, "read\ud800", {"path": "\udc00"})
    assert not call.allowed and call.decision.rule == "malformed-input"
    call.record_refusal()
    call.record_error(ValueError("bad \ud800 value"))
    records = signer.session_log()
    assert [r["kind"] for r in records] == ["intent", "decision", "result", "result"]
    assert records[2]["payload"]["tool"] == "read\\ud800"
    assert "bad \\ud800 value" in records[3]["payload"]["summary"]
    assert verify_records(records, {support_bot.key_id: support_bot.public_key_b64}).ok


# -- the check that encodes: what it passes, the walk passes, and the engine takes its text --

ODD_SHAPES = st.deferred(
    lambda: st.one_of(
        SCALARS_WITH_EDGES,
        st.lists(ODD_SHAPES, max_size=4),
        st.lists(ODD_SHAPES, max_size=3).map(tuple),  # a tuple: accepted as an array, by the walk
        st.dictionaries(st.one_of(TEXT, st.integers(), st.booleans(), st.none(), st.floats()), ODD_SHAPES, max_size=4),
    )
)
SCALARS_WITH_EDGES = st.one_of(
    JSON_LIKE,
    st.sampled_from([2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 10**18, 1234567890123456789012, 1e16, -0.0]),
    st.sampled_from(["a\\u0000b", "\\u0000", "[[[[", "{{{{", "9" * 25, "é😀\u2028"]),
)


@settings(max_examples=1500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=ODD_SHAPES, max_depth=st.integers(min_value=1, max_value=70), max_bytes=st.integers(min_value=50, max_value=5000))
def test_the_encoding_check_passes_only_what_the_walk_passes(value, max_depth, max_bytes):
    text = encoded_input(value, max_depth=max_depth, max_bytes=max_bytes)
    if text is not None:
        assert input_problem(value, max_depth=max_depth, max_bytes=max_bytes) is None
        assert text == encode_input(value)


@settings(max_examples=500, deadline=None, database=None)
@given(value=JSON_LIKE)
def test_plain_json_the_walk_passes_is_encoded_without_a_walk(value):
    value = {"action": {"args": {"v": value}}}
    if input_problem(value) is None:
        text = encode_input(value)
        # What the cheap tests leave to the walk although it is fine: an escaped NUL's look-alike
        # (a backslash before u0000), brackets in strings.
        if "\\u0000" not in text and text.count("[") + text.count("{") <= 64:
            assert encoded_input(value) == text


@pytest.mark.parametrize(
    "args",
    [{1: "x"}, {"a": {True: 1}}, {"n": 2**64}, {"s": "a\x00"}, {"s": "\ud800"}, {"t": (1, 2)}, {"n": float("nan")},
     {"d": deep(70)}, {"b": "x" * 60_000}],
)
def test_shapes_the_encoding_check_leaves_to_the_walk(args):
    assert encoded_input({"action": {"args": args}}) is None


def test_the_engine_evaluates_the_text_the_check_made(support_bot, backend, monkeypatch):
    from agents_sdk.engine import decision_cache

    guard = Guard(support_bot, backend, environment="prod")
    made: list[str] = []
    original = decision_cache.encode_input

    def counting(value):
        made.append("encoded")
        return original(value)

    monkeypatch.setattr("agents_sdk.guard.inputs.encode_input", counting)
    encodings: list[str] = []  # every run of the C encoder, the check's and the engine's
    real_encode = decision_cache._C_ENCODE
    monkeypatch.setattr(decision_cache, "_C_ENCODE", lambda v, i: encodings.append("x") or real_encode(v, i))
    assert guard.check("ticket_read", {"ticket_id": 7}).allow
    assert made == ["encoded"] and encodings == ["x"]  # the check's encoding; the engine took its text
    assert decision_cache._known.value is None  # forgotten after the decision
    # A tuple is walked (the check's text is not taken), then the engine encodes the input itself.
    assert guard.check("ticket_read", {"ticket_id": 7, "tags": ("a", "b")}).effect in ("allow", "deny")
    assert len(encodings) == 3
