"""Encoded credentials (base64 and base64url, padded or not, glued to other text) in the
arguments and in the context are refused (rego/warden/sensitive_data.rego)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents_sdk.engine import RegoEngine
from agents_sdk.tests.signed_bundles import library_modules, registry

STANDARD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# The fixed part of each secret pattern (every match contains one of them).
LITERALS = ["AKIA", "ASIA", "PRIVATE KEY", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xoxa-", "xoxb-", "xoxp-", "xoxr-",
            "xoxs-", "rk_live_", "sk_live_", "AIza"]


def marker(literal: str, alignment: int) -> str:
    """The base64 characters made only of `literal`'s bits when it starts `alignment` bytes
    into a 3-byte group."""
    bits = "".join(f"{b:08b}" for b in literal.encode())
    start, end = 8 * alignment, 8 * alignment + len(bits)
    index, out = (start + 5) // 6, ""
    while 6 * index + 6 <= end:
        out += STANDARD[int(bits[6 * index - start: 6 * index - start + 6], 2)]
        index += 1
    return out


@pytest.fixture(scope="module")
def policy():
    return RegoEngine("regorus").compile(library_modules(), registry())


def test_the_marker_pre_check_is_derived_from_the_secret_patterns(policy):
    expected = {marker(literal, a) for literal in LITERALS for a in range(3)}
    assert not any(c in m for m in expected for c in "+/")  # so base64url spells them alike
    assert set(policy.evaluate("data.warden.base64_marker_pattern", {}).split("|")) == expected


SECRETS = st.one_of(
    st.from_regex(r"\A(AKIA|ASIA)[0-9A-Z]{16}\Z"),
    st.from_regex(r"\Agh[pousr]_[A-Za-z0-9]{36}\Z"),
    st.from_regex(r"\Axox[abprs]-[A-Za-z0-9-]{10,14}\Z"),
    st.from_regex(r"\A[rs]k_live_[A-Za-z0-9]{16,20}\Z"),
    st.from_regex(r"\AAIza[0-9A-Za-z_-]{35}\Z"),
)
ASCII_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8)


def spelled(secret: str, before: str, after: str, url: bool, padded: bool, glue: str) -> str:
    # A separator byte keeps the secret's own word boundary whatever text comes around it.
    raw = (before + " " + secret + " " + after).encode()
    text = (base64.urlsafe_b64encode if url else base64.b64encode)(raw).decode()
    return glue + (text if padded else text.rstrip("="))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=SECRETS, before=ASCII_TEXT, after=ASCII_TEXT, url=st.booleans(), padded=st.booleans(),
       glue=st.sampled_from(["", "x", "ab", "abc", "////", "note: ", "\n", "<", "é"]),
       where=st.sampled_from(["args", "nested args", "key", "context", "nested context"]))
def test_no_encoding_of_a_credential_is_allowed(policy, secret, before, after, url, padded, glue, where):
    value = spelled(secret, before, after, url, padded, glue)
    args: dict = {"id": 7}
    context: dict = {"time": "2026-01-01T00:00:00Z"}
    if where == "args":
        args["note"] = value
    elif where == "nested args":
        args["meta"] = [{"a": {"b": value}}]
    elif where == "key":
        args[value] = True
    elif where == "context":
        context["note"] = value
    else:
        context["trace"] = {"spans": [value]}
    decision = policy.decide({"agent": {"id": "support-bot"},
                              "action": {"type": "tool_call", "tool": "ticket_read", "args": args}, "context": context})
    rules = {r["rule"] for r in decision["reasons"]}
    assert decision["effect"] == "deny"
    assert rules & {"secret-in-args", "secret-in-context"}, (value, rules)
