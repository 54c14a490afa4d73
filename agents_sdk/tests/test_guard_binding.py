"""``@guard.tool`` binds a call's arguments by name on every call: its fast binder must give
exactly what ``inspect.Signature.bind`` + ``apply_defaults`` give, and leave every call it
cannot bind to ``bind`` (which raises the TypeError)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from agents_sdk.guard.guard import _plain_parameters


def tool(a: Any, b: Any = 2, *, c: Any, d: Any = 4) -> None:
    pass


def reference(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    try:
        bound = inspect.signature(tool).bind(*args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    return dict(bound.arguments)


CALLS = [
    ((1,), {"c": 3}),
    ((1, 5), {"c": 3, "d": 6}),
    ((), {"a": 1, "c": 3}),
    ((), {"c": 3, "a": 1, "b": None}),
    ((1, 2, 3), {"c": 3}),  # too many positional
    ((1,), {"a": 1, "c": 3}),  # a twice
    ((1,), {}),  # c missing
    ((1,), {"c": 3, "e": 5}),  # unknown keyword
    ((), {}),
]


@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_the_fast_binder_binds_as_inspect_does_or_leaves_the_call_to_it(args, kwargs):
    bind = _plain_parameters(inspect.signature(tool))
    assert bind is not None
    got = bind(args, kwargs)
    assert got == reference(args, kwargs)
    if got is not None:
        assert list(got) == list(reference(args, kwargs) or {})  # parameter order, as bind gives


def test_functions_with_star_arguments_or_self_are_left_to_inspect():
    def star(*paths: str) -> None: ...
    def keywords(**options: Any) -> None: ...
    def method(self: Any, path: str) -> None: ...

    assert [_plain_parameters(inspect.signature(f)) for f in (star, keywords, method)] == [None, None, None]
