"""The pack's card detection (rego/warden/sensitive_data.rego) against a plain Python reference.

The reference: split the text into ASCII words ([A-Za-z0-9_]+); words joined by exactly one
space or dash form a chain; every run of consecutive all-digit words of a chain with 13 to 19
digits is a candidate, and a string is masked when some candidate is Luhn-valid. Nothing
else is: not digits glued to letters or _, not runs broken by two separators, not other
scripts' digits (they are no ASCII word characters, so they separate like punctuation).
Generated strings hold several candidates, near misses, separators, Unicode digits and
text around them. Real OPA decides too where it is installed (`nox -s opa-oracle`).
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agents_sdk.engine import RegoEngine, load_modules
from agents_sdk.engine.corpus import DATA
from agents_sdk.tests.conftest import REPO_ROOT

PACK = {k: v for k, v in load_modules(REPO_ROOT / "rego", relative_to=REPO_ROOT).items() if not k.endswith("_test.rego")}
PROBE = """package probe

import rego.v1

cards := sort([digits | some digits in data.warden.card_numbers(input.s)])
"""
WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
DIGITS = frozenset("0123456789")
BACKENDS = ["regorus", "opa"]


def luhn_sum(digits: str) -> int:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total


def luhn_valid(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and luhn_sum(digits) % 10 == 0


def reference_candidates(text: str) -> set[str]:
    words: list[tuple[int, int]] = []  # [start, end) of each ASCII word
    index = 0
    while index < len(text):
        if text[index] in WORD:
            start = index
            while index < len(text) and text[index] in WORD:
                index += 1
            words.append((start, index))
        else:
            index += 1
    chains: list[list[str]] = []
    for number, (start, end) in enumerate(words):
        joined = number > 0 and start - words[number - 1][1] == 1 and text[start - 1] in " -"
        if joined:
            chains[-1].append(text[start:end])
        else:
            chains.append([text[start:end]])
    found = set()
    for chain in chains:
        for i in range(len(chain)):
            for j in range(i, len(chain)):
                digits = "".join(chain[i : j + 1])
                if len(digits) > 19 or not set(digits) <= DIGITS:
                    break
                if len(digits) >= 13:
                    found.add(digits)
    return found


def reference_masked(text: str) -> bool:
    return any(luhn_valid(digits) for digits in reference_candidates(text))


def luhn_complete(body: str) -> str:
    """body + the check digit that makes it Luhn-valid."""
    return next(body + d for d in "0123456789" if luhn_sum(body + d) % 10 == 0)


@st.composite
def card_like(draw) -> str:
    """A digit string of 12 to 20 digits, Luhn-valid or not, split into groups by separators."""
    length = draw(st.integers(12, 20))
    body = "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=length - 1, max_size=length - 1)))
    digits = luhn_complete(body) if draw(st.booleans()) else body + draw(st.sampled_from("0123456789"))
    cuts = sorted(draw(st.sets(st.integers(1, len(digits) - 1), max_size=5)))
    separators = draw(st.lists(st.sampled_from([" ", "-", " ", "-", "  ", "--", " -", "\u00a0", "\t", "\n", "/", "."]),
                               min_size=len(cuts), max_size=len(cuts)))
    parts, last = [], 0
    for cut, separator in zip(cuts, separators, strict=True):
        parts += [digits[last:cut], separator]
        last = cut
    return "".join(parts + [digits[last:]])


PIECES = st.one_of(
    card_like(),
    st.sampled_from(["4111111111111111", "4111 1111 1111 1111", "4111111111111112", "378282246310005", "123", "12/29",
                     "5555-5555-5555-4444", "4222222222222", "0000000000000"]),
    st.text(alphabet=st.sampled_from(list("0123456789 -_aZx.:/") + ["٤", "４", "১", "߀", "é", "\u00a0", "\u2028", "\x00"]),
            max_size=6),
)
TEXT = st.lists(PIECES, min_size=1, max_size=5).map("".join)


def call(args) -> dict:
    return {"agent": {"id": "support-bot"}, "action": {"type": "tool_call", "tool": "ticket_read", "args": args},
            "context": {}}


@pytest.fixture(scope="module", params=BACKENDS)
def policies(request):
    if request.param == "opa" and os.environ.get("WARDEN_OPA_ORACLE") != "1":
        pytest.importorskip("opa_bindings")
    # The pack alone decides as enforcement points do (regorus: on its compiled VM); the probe
    # module makes a policy that is not the verified library (regorus: its interpreter).
    return RegoEngine(request.param).compile(PACK, DATA), RegoEngine(request.param).compile(PACK | {"probe.rego": PROBE}, DATA)


FOUND = [
    # Last session: a Luhn-invalid number consumed the space before a valid one.
    "4111111111111112 4111111111111111",
    "x 4111111111111112-4111111111111111 y",
    "4111 1111 1111 1111 123",  # a card followed by a CVV group
    "99 4111 1111 1111 1111",
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(TEXT)
@example("4111111111111112 4111111111111111")
@example("٤4111111111111111٤")
@example("４１１１１１１１１１１１１１１１")
@example("a4111111111111111 4111111111111111b")
def test_card_candidates_and_masks_match_the_reference(policies, text):
    pack, probe = policies
    expected = reference_candidates(text)
    assert set(probe.evaluate("data.probe.cards", {"s": text})) == expected, text
    mask = pack.decide(call({"n": text, "k": 1}))["obligations"]["mask"]
    assert mask == (["/action/args/n"] if reference_masked(text) else []), (text, sorted(expected))


@pytest.mark.parametrize("text", FOUND)
def test_found_cases_are_masked(policies, text):
    assert reference_masked(text)
    assert policies[0].decide(call({"note": text}))["obligations"]["mask"] == ["/action/args/note"]


def test_many_cards_in_one_long_text_are_each_found(policies):
    rng = random.Random(7)
    cards = {luhn_complete("".join(rng.choice("0123456789") for _ in range(15))) for _ in range(30)}
    text = " and ".join(" ".join(c[i : i + 4] for i in range(0, 16, 4)) for c in sorted(cards))
    assert reference_candidates(text) == cards
    assert set(policies[1].evaluate("data.probe.cards", {"s": text})) == cards
    assert policies[0].decide(call({"text": text}))["obligations"]["mask"] == ["/action/args/text"]


def test_reference_reads_the_documented_shapes():
    assert reference_candidates("4111 1111 1111 1111 123") == {"4111111111111111", "4111111111111111123", "111111111111123"}
    assert reference_candidates("a4111111111111111") == set()
    assert reference_candidates("4111  1111 1111 1111") == set()
    assert reference_candidates("٤4111111111111111-") == {"4111111111111111"}
    assert reference_candidates("1 2 3 4 5 6 7 8 9 0 1 2 3") == {"1234567890123"}
    assert not reference_masked("4111 1111 1111 1112")
