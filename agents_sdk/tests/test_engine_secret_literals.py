"""The secret pre-check's literal test (rego/warden/sensitive_data.rego, secret_literal_pattern)
is a necessary condition for its regex: every text sensitive_text_pattern matches holds one of
the literals, so skipping the regex when none is present never skips a secret."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from agents_sdk.engine import RegoEngine
from agents_sdk.tests.signed_bundles import library_modules, registry

CLASS = re.compile(r"\[([^\]]+)\]")


@pytest.fixture(scope="module")
def pack():
    modules = library_modules()
    policy = RegoEngine("regorus").compile(modules, registry())
    source = next(s for p, s in modules.items() if p.endswith("sensitive_data.rego"))
    alternatives = []
    for name in ("secret_text_pattern", "base64_marker_pattern"):
        alternatives += re.search(rf"{name} := `([^`]*)`", source).group(1).split("|")
    literals = re.search(r"secret_literal_pattern := `([^`]*)`", source).group(1).split("|")
    # Literals alone: the regex then matches exactly where one of them occurs.
    assert all(re.escape(literal) == literal for literal in literals), literals
    return policy, alternatives, set(literals)


def fixed_prefixes(alternative: str) -> list[str]:
    """Every spelling of the alternative's part before its first repeated class: each match
    of the alternative starts with one of them."""
    spellings, rest = [""], alternative
    while rest:
        single = CLASS.match(rest)
        if single and not rest[single.end():single.end() + 1] == "{":
            options = single.group(1)
            assert "-" not in options.strip("-"), options  # a set of letters, not a range
            spellings = [s + c for s in spellings for c in options]
            rest = rest[single.end():]
        elif rest[0] not in "[{(\\.*+?^$|":
            spellings = [s + rest[0] for s in spellings]
            rest = rest[1:]
        else:
            break
    return spellings


def test_every_alternative_starts_with_text_that_holds_an_eraser(pack):
    _, alternatives, erasers = pack
    assert len(alternatives) == 55 and len(erasers) == 19
    for alternative in alternatives:
        prefixes = fixed_prefixes(alternative)
        assert min(len(p) for p in prefixes) >= 3, alternative
        for prefix in prefixes:
            assert any(e in prefix for e in erasers), (alternative, prefix)


def test_fixed_prefixes_reads_the_pattern_shapes():
    assert fixed_prefixes("gh[pousr]_[A-Za-z0-9]{36}") == ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]
    assert fixed_prefixes("[rs]k_live_[A-Za-z0-9]{16}") == ["rk_live_", "sk_live_"]
    assert fixed_prefixes("PRIVATE KEY-----") == ["PRIVATE KEY-----"]


def spell(alternative: str, rng: random.Random) -> str:
    """A random text the alternative matches (classes with ranges, {n} repeats, literals)."""
    out = ""
    for cls, times, char in re.findall(r"\[([^\]]+)\](?:\{(\d+)\})?|(.)", alternative):
        if not cls:
            out += char
            continue
        options = re.sub(r"(.)-(.)", lambda m: "".join(map(chr, range(ord(m.group(1)), ord(m.group(2)) + 1))), cls)
        out += "".join(rng.choice(options) for _ in range(int(times or 1)))
    return out


def test_random_texts_with_a_match_always_hold_an_eraser(pack):
    # Beyond the prefixes: random text around a random spelling of each alternative.
    _, alternatives, erasers = pack
    pattern = re.compile("|".join(alternatives))
    rng = random.Random(20261130)
    alphabet = "abcdefghijklmnopqrstuvwxyzTZ0123456789_-+/= :.{}\"\\"
    for alternative, _ in itertools.product(alternatives, range(40)):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
        text += spell(alternative, rng) + "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
        assert pattern.search(text), (alternative, text)
        assert any(e in text for e in erasers), text


def test_the_pack_skips_the_regex_only_without_an_eraser(pack):
    policy, _, _ = pack
    plain = {"agent": {"id": "support-bot"}, "action": {"tool": "ticket_read", "args": {"note": "due 2026-01-01T00:00:00Z"}}}
    assert policy.evaluate("data.warden.secret_literal_present", plain) is None
    key = {**plain, "action": {"tool": "ticket_read", "args": {"note": "AKIAIOSFODNN7EXAMPLE"}}}
    assert policy.evaluate("data.warden.secret_literal_present", key) is True


@pytest.mark.parametrize(
    "note, present",
    [
        ("due 2026-01-01T00:00:00Z", False),  # T and Z alone: timestamps
        ("lowercase text, digits 0123456789 and _-+/=", False),
        ("gh_ghq_xo-x k-live dob doc2", False),  # near misses of each lowercase literal
        ("xAx", True),
        ("ghr_", True),
        ("a docl b", True),
        ("é k_live_", True),
    ],
)
def test_the_literal_pattern_holds_exactly_where_a_literal_occurs(pack, note, present):
    policy, _, literals = pack
    request = {"agent": {"id": "support-bot"}, "action": {"tool": "ticket_read", "args": {"note": note}}}
    assert any(literal in note for literal in literals) == present
    assert (policy.evaluate("data.warden.secret_literal_present", request) is True) == present
