"""Refuses Rego source with brackets opened directly inside each other past a limit.

regorus parses `[[[…` and `{{{…` in time exponential in the run's length (each opener may
start an array, a set, an object or a comprehension, and it tries them in turn): 14 levels
take 0.35 s, 16 take 1.6 s, 20 would take about half a minute. A module is policy-author
input (and reaches every engine in a bundle), so such a run is refused before parsing, with
where it is; OPA parses it at once. Data nested that deep is still possible, built at run
time (`json.unmarshal`) or with other tokens between the brackets (`[1, [2, …]]`).
"""

from __future__ import annotations

import re

from agents_sdk.engine.errors import RegoError

MAX_DIRECT_NESTING = 8
_OPENERS = "[{"
_SPACE = " \t\r\n"


def nesting_problems(path: str, source: str, limit: int = MAX_DIRECT_NESTING) -> list[RegoError]:
    """The first run of more than `limit` brackets opened directly inside each other (only
    white space between them), outside strings and comments, as a compile error; or []."""
    if not _run_longer_than(limit).search(source):  # in C; such a run outside strings is one here too
        return []
    line, column, run = 1, 0, 0
    index, size = 0, len(source)
    while index < size:
        char = source[index]
        column += 1
        if char == "\n":
            line, column = line + 1, 0
        elif char == "#":  # a comment, to the end of the line
            end = source.find("\n", index)
            index = size if end < 0 else end
            continue
        elif char == '"' or char == "`":
            end = _string_end(source, index)
            skipped = source[index:end]
            newlines = skipped.count("\n")
            if newlines:  # a raw string may span lines
                line, column = line + newlines, len(skipped) - skipped.rfind("\n") - 1
            else:
                column += len(skipped) - 1
            index, run = end, 0
            continue
        elif char in _OPENERS:
            run += 1
            if run > limit:
                return [RegoError(path, line, column, f"more than {limit} brackets opened directly inside each "
                                  "other (the embedded engine parses such nesting in exponential time): put "
                                  "something between them, or build the value with json.unmarshal")]
        elif char not in _SPACE:
            run = 0
        index += 1
    return []


_runs: dict[int, re.Pattern[str]] = {}


def _run_longer_than(limit: int) -> re.Pattern[str]:
    if limit not in _runs:
        _runs[limit] = re.compile(r"(?:[\[{][ \t\r\n]*)" + "{" + str(limit + 1) + "}")
    return _runs[limit]


def _string_end(source: str, start: int) -> int:
    """The index just past the string that opens at `start` (the end of the source when it
    never closes: the parser then reports it)."""
    quote = source[start]
    index = start + 1
    while index < len(source):
        char = source[index]
        if char == "\\" and quote == '"':
            index += 2
            continue
        if char == quote or (char == "\n" and quote == '"'):
            return index + 1
        index += 1
    return len(source)
