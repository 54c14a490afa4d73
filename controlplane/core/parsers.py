"""The JSON parser of every DRF endpoint: bounded depth, storable strings, finite numbers.

DRF's JSONParser lets the json module recurse without limit (a RecursionError, so a 500,
for `[[[[…]]]]` a few thousand deep) and passes NUL and lone surrogates through to the
database. This one refuses all three with a 400 naming the field.
"""

from __future__ import annotations

import codecs
import json
import re

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from controlplane.core.storable import check_value

# Brackets outside strings, counted before parsing so a deep body never reaches the
# recursive decoder. Strings are skipped whole (escapes included).
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def nesting_depth(text: str, limit: int) -> int:
    """Deepest bracket nesting of a JSON text, counting no further than `limit` + 1."""
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif token in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON; send a finite number or null")


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
        except UnicodeDecodeError as exc:
            raise ParseError(f"the body is not valid {encoding} (byte {exc.start}); send UTF-8 JSON") from exc
        limit = settings.WARDEN_MAX_JSON_DEPTH
        if nesting_depth(text, limit) > limit:
            raise ParseError(f"the JSON body is nested more than {limit} levels deep; flatten it")
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            raise ParseError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"not acceptable JSON: {exc}"[:300]) from exc
        # Unstorable strings are named by their path in the body, e.g. "policy_settings.note".
        check_value(data)
        return data
