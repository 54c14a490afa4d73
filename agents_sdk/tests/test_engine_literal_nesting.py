"""Directly nested brackets past MAX_DIRECT_NESTING are refused before regorus parses them
(its parser takes time exponential in such a run: a module is policy-author input)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents_sdk.engine import RegoCompileError, RegoEngine, load_modules
from agents_sdk.engine.literal_nesting import MAX_DIRECT_NESTING, nesting_problems

LIMIT = MAX_DIRECT_NESTING
REPO = Path(__file__).resolve().parents[2]


def module(body: str) -> dict[str, str]:
    return {"org/deep.rego": f"package org.deep\n\nimport rego.v1\n\n{body}\n"}


@pytest.mark.parametrize("opener, closer", [("[", "]"), ("{", "}")])
def test_a_run_past_the_limit_is_refused_at_once_naming_where(opener, closer):
    depth = 40  # regorus alone: hours
    started = time.monotonic()
    with pytest.raises(RegoCompileError) as refused:
        RegoEngine().compile(module(f"x := {opener * depth}1{closer * depth}"))
    assert time.monotonic() - started < 30  # a generous bound on "not exponential": 2^40 steps never end
    (error,) = refused.value.errors
    assert (error.file, error.line, error.column) == ("org/deep.rego", 5, 6 + LIMIT)
    assert "json.unmarshal" in error.message


def test_the_limit_itself_compiles_and_evaluates():
    nested = "[" * LIMIT + "1" + "]" * LIMIT
    policy = RegoEngine().compile(module(f"x := {nested}"))
    value = policy.evaluate("data.org.deep.x", {})
    for _ in range(LIMIT - 1):
        value = value[0]
    assert value == [1]


def test_white_space_and_mixed_openers_still_count_and_anything_between_them_ends_the_run():
    spaced = "[ {\n\t" * LIMIT + "["
    assert nesting_problems("m.rego", f"x := {spaced}")
    separated = "[1, " * (3 * LIMIT)
    assert not nesting_problems("m.rego", f"x := {separated}")


def test_brackets_in_strings_and_comments_are_not_nesting():
    deep = "[" * (3 * LIMIT)
    source = f'x := "{deep}"\ny := `{deep}\n{deep}`\n# {deep}\nz := json.unmarshal(`{deep}`)\n'
    assert nesting_problems("m.rego", source) == []
    # and what follows a string is still scanned, at its right line
    (error,) = nesting_problems("m.rego", source + "w := " + deep)
    assert error.line == 6


def test_an_escaped_quote_does_not_end_a_string():
    deep = "[" * (3 * LIMIT)
    assert nesting_problems("m.rego", f'x := "\\" {deep}"') == []
    assert nesting_problems("m.rego", f'x := "\\\\" + {deep}')


def test_the_shipped_library_and_templates_are_within_the_limit():
    for root in ("rego", "controlplane/authoring/generated"):
        for path, source in load_modules(REPO / root, relative_to=REPO).items():
            assert nesting_problems(path, source) == [], path


@given(st.text(alphabet="[]{}\"`#\\ \n1ab,:", max_size=80))
def test_the_scan_finds_exactly_the_runs_a_plain_reading_does(source):
    assert bool(nesting_problems("m.rego", source)) == _plain_reading_has_run(source)


def _plain_reading_has_run(source: str) -> bool:
    """A slow, obvious reference: drop comments and strings character by character, then
    look for LIMIT + 1 openers with only white space between them."""
    kept, index, quote = [], 0, None
    while index < len(source):
        char = source[index]
        if quote:
            if quote == '"' and char == "\\":
                index += 2
                continue
            if char == quote or (quote == '"' and char == "\n"):
                quote = None
                kept.append(" ")  # a string ends a run, as any token does
                kept.append("x")
            index += 1
            continue
        if char == "#":
            while index < len(source) and source[index] != "\n":
                index += 1
            continue
        if char in "\"`":
            quote = char
            kept.append("x")
            index += 1
            continue
        kept.append(char)
        index += 1
    run = 0
    for char in kept:
        if char in "[{":
            run += 1
            if run > LIMIT:
                return True
        elif char not in " \t\r\n":
            run = 0
    return False


def test_the_outline_parse_refuses_the_run_too():
    # The control plane's publish gate outlines each module on its own before compiling it.
    from agents_sdk.engine.outline import outline

    started = time.monotonic()
    with pytest.raises(RegoCompileError) as refused:
        outline("org/deep.rego", "package org.deep\n\nx := " + "{" * 40 + "}" * 40 + "\n")
    assert time.monotonic() - started < 30
    assert refused.value.errors[0].line == 3
