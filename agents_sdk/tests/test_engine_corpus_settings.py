"""The OPA oracle's corpus: SEED and SIZE by default, a longer or another run from the environment."""

from __future__ import annotations

import itertools

import pytest

from agents_sdk.engine.corpus import (
    ORACLE_SEED_VARIABLE,
    ORACLE_SIZE_VARIABLE,
    SEED,
    SIZE,
    corpus,
    oracle_corpus_settings,
)


def test_without_settings_the_oracle_decides_the_default_corpus():
    assert oracle_corpus_settings({}) == (SEED, SIZE)
    assert oracle_corpus_settings({ORACLE_SEED_VARIABLE: "", ORACLE_SIZE_VARIABLE: "  "}) == (SEED, SIZE)


def test_a_longer_run_and_another_seed_come_from_the_environment():
    assert oracle_corpus_settings({ORACLE_SIZE_VARIABLE: "50000"}) == (SEED, 50_000)
    assert oracle_corpus_settings({ORACLE_SEED_VARIABLE: "7", ORACLE_SIZE_VARIABLE: str(SIZE)}) == (7, SIZE)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (ORACLE_SIZE_VARIABLE, "50k", "must be a whole number"),
        (ORACLE_SIZE_VARIABLE, "1e5", "must be a whole number"),
        (ORACLE_SIZE_VARIABLE, "100", f"must be at least {SIZE}"),
        (ORACLE_SIZE_VARIABLE, "-50000", f"must be at least {SIZE}"),
        (ORACLE_SEED_VARIABLE, "-1", "must be at least 0"),
        (ORACLE_SEED_VARIABLE, "0x10", "must be a whole number"),
        (ORACLE_SEED_VARIABLE, "１２", "must be a whole number"),
        (ORACLE_SIZE_VARIABLE, "50_000", "must be a whole number"),
    ],
)
def test_a_setting_that_is_no_whole_number_or_too_small_is_refused_by_name(variable, value, message):
    with pytest.raises(ValueError, match=message) as raised:
        oracle_corpus_settings({variable: value})
    assert variable in str(raised.value)


def test_another_seed_gives_another_corpus_and_the_same_seed_the_same():
    first = list(itertools.islice(corpus(SEED, 50), 50))
    assert first == list(corpus(SEED, 50))
    assert first != list(corpus(SEED + 1, 50))
