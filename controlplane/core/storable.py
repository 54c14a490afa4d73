"""What every database Warden runs on can store: the one check for text that reaches SQL.

PostgreSQL refuses U+0000 in text and jsonb, and no UTF-8 column takes a lone UTF-16
surrogate (what `json.loads('"\\ud800"')` gives). Such input must be the caller's 400
naming the field, never the database's 500. Used by the JSON parser of every DRF endpoint,
by the query-parameter check in core.middleware, and by serializers.
"""

from __future__ import annotations

from typing import Any

from controlplane.core.exceptions import InvalidInput

NUL_MESSAGE = "must not contain the NUL character (U+0000); remove it"
SURROGATE_MESSAGE = "must not contain unpaired UTF-16 surrogates (invalid Unicode); send valid UTF-8 text"


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored, or None."""
    if "\x00" in text:
        return NUL_MESSAGE
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE
    return None


def check_text(text: str, field: str) -> str:
    if problem := text_problem(text):
        raise InvalidInput(problem, field=field)
    return text


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]" if path else f"[{part}]"
    return f"{path}.{part}" if path else part


def check_value(value: Any, *, field: str = "", max_depth: int | None = None) -> None:
    """Raise InvalidInput naming the dotted path of the first unstorable string (keys
    included) in a parsed JSON value, or of nesting deeper than `max_depth`. Iterative, so
    depth itself can never exhaust the stack here."""
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if max_depth is not None and depth >= max_depth:
                raise InvalidInput(
                    f"is nested more than {max_depth} levels deep; flatten it", field=path or "non_field_errors"
                )
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if isinstance(key, str) and (problem := text_problem(key)):
                    raise InvalidInput(f"has a key that {problem}", field=path or "non_field_errors")
                stack.append((child, _join(path, key), depth + 1))
        elif isinstance(item, str) and (problem := text_problem(item)):
            raise InvalidInput(problem, field=path or "non_field_errors")
