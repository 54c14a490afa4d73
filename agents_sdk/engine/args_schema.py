"""Per-tool argument schemas: the tool catalog's JSON Schema for a tool's `args`.

A catalog entry (`data.warden_registry.tools.<name>.args_schema`) may carry a JSON Schema
for the tool's arguments, in the subset the policy pack itself enforces
(rego/warden/args_schema.rego), so a real OPA sidecar gives the same answer as the Guard
and `warden sidecar`, which check it here before evaluating:

    {"type": "object",
     "properties": {"path": {"type": "string", "maxLength": 4096},
                    "paths": {"type": "array", "items": {"type": "string"}, "maxItems": 100},
                    "mode": {"enum": ["soft", "hard"]}},
     "required": ["path"], "additionalProperties": false}

Keywords: at the top `type` ("object"), `properties`, `required`, `additionalProperties`
(a boolean); per property `type` (a name or a list of names among string, number, integer,
boolean, array, object, null), `items` (`{"type": ...}`), `enum` (strings), `maxLength`,
`maxItems`. `title`, `description` and `$schema` are allowed anywhere and ignored. A schema
with any other keyword is refused when the tool is saved (`schema_problems`), since the pack
could not enforce it and an unenforced constraint would read as a guarantee.

Arguments that break the schema are denied with `malformed-args`, one reason per argument
and expectation, worded as the pack words them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeGuard

TYPES = ("string", "number", "integer", "boolean", "array", "object", "null")
_ANNOTATIONS = {"title", "description", "$schema"}
_TOP_KEYWORDS = {"type", "properties", "required", "additionalProperties"} | _ANNOTATIONS
_PROPERTY_KEYWORDS = {"type", "items", "enum", "maxLength", "maxItems"} | _ANNOTATIONS
_ITEMS_KEYWORDS = {"type"} | _ANNOTATIONS
MAX_LIMIT = 2**31
CONTROLS = ["eu_ai_act.art15(4)", "eu_ai_act.art15(5)", "hipaa.164.312(a)(1)"]

Violation = tuple[str, str]  # (argument name, what it must be)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_LIMIT


def _type_problems(where: str, value: Any) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n in TYPES for n in names):
        return [f"{where}.type: must be one of {', '.join(TYPES)}, or a non-empty list of them"]
    return []


def schema_problems(schema: Any) -> list[str]:
    """Why `schema` is not an argument schema the pack can enforce ([] when it is)."""
    if not isinstance(schema, Mapping):
        return ["args_schema: must be a JSON object"]
    problems = [f"args_schema.{key}: not supported (supported: {', '.join(sorted(_TOP_KEYWORDS))})"
                for key in schema if key not in _TOP_KEYWORDS]
    if schema.get("type", "object") != "object":
        problems.append('args_schema.type: must be "object" (a tool\'s arguments are an object)')
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        return problems + ["args_schema.properties: must be an object"]
    for name, spec in properties.items():
        where = f"args_schema.properties.{name}"
        if not name:
            problems.append("args_schema.properties: an argument name must not be empty")
        if not isinstance(spec, Mapping):
            problems.append(f"{where}: must be an object")
            continue
        problems += [f"{where}.{key}: not supported (supported: {', '.join(sorted(_PROPERTY_KEYWORDS))})"
                     for key in spec if key not in _PROPERTY_KEYWORDS]
        if "type" in spec:
            problems += _type_problems(where, spec["type"])
        if "items" in spec:
            items = spec["items"]
            if not isinstance(items, Mapping) or any(key not in _ITEMS_KEYWORDS for key in items):
                problems.append(f"{where}.items: must be an object with at most a type")
            elif "type" in items:
                problems += _type_problems(f"{where}.items", items["type"])
        if "enum" in spec and not (isinstance(spec["enum"], list) and spec["enum"]
                                   and all(isinstance(v, str) for v in spec["enum"])):
            problems.append(f"{where}.enum: must be a non-empty list of strings")
        for limit in ("maxLength", "maxItems"):
            if limit in spec and not _is_count(spec[limit]):
                problems.append(f"{where}.{limit}: must be a whole number from 0 to 2^31")
    required = schema.get("required", [])
    if not (isinstance(required, list) and all(isinstance(n, str) and n for n in required)):
        problems.append("args_schema.required: must be a list of argument names")
    if not isinstance(schema.get("additionalProperties", True), bool):
        problems.append("args_schema.additionalProperties: must be true or false")
    return problems


def _types(spec: Mapping[str, Any]) -> list[str]:
    declared = spec.get("type")
    if isinstance(declared, str):
        return [declared]
    return [kind for kind in declared if isinstance(kind, str)] if isinstance(declared, list) else []


def _typed(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, Mapping)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "integer":
        return number and (isinstance(value, int) or (math.isfinite(value) and value == math.floor(value)))
    return number if kind == "number" else False


def _conforms(spec: Mapping[str, Any], value: Any) -> bool:
    return spec.get("type") is None or any(_typed(kind, value) for kind in _types(spec))


def _limit(value: Any) -> int | None:
    """A limit the pack applies (a whole number from 0 to 2^31), else None (ignored)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value) if 0 <= value <= MAX_LIMIT and value == math.floor(value) else None


def args_violations(args: Mapping[str, Any], schema: Mapping[str, Any]) -> list[Violation]:
    """Every way `args` breaks `schema`, as (argument name, expectation) pairs, sorted and
    worded as rego/warden/args_schema.rego words them. Mirrors the pack on any schema
    shape, valid or not (the pack ignores what it cannot read, and so does this)."""
    found: set[Violation] = set()
    properties = schema.get("properties", {})
    properties = properties if isinstance(properties, Mapping) else {}
    for name, value in args.items():
        spec = properties.get(name)
        if not isinstance(spec, Mapping):
            if schema.get("additionalProperties", True) is False:
                found.add((name, "absent: the tool's argument schema does not declare it"))
            continue
        if not _conforms(spec, value):
            found.add((name, f"of type {' or '.join(_types(spec))}"))
        items = spec.get("items")
        if isinstance(value, list) and isinstance(items, Mapping) and items.get("type") is not None:
            if not all(_conforms(items, item) for item in value):
                found.add((name, f"an array of {' or '.join(_types(items))} items"))
        enum = spec.get("enum")
        if isinstance(enum, list) and not (isinstance(value, str) and value in [v for v in enum if isinstance(v, str)]):
            found.add((name, "one of the values the tool's argument schema lists"))
        max_length = _limit(spec.get("maxLength"))
        if isinstance(value, str) and max_length is not None and len(value) > max_length:
            found.add((name, f"at most {max_length} characters long"))
        max_items = _limit(spec.get("maxItems"))
        if isinstance(value, list) and max_items is not None and len(value) > max_items:
            found.add((name, f"at most {max_items} items"))
    required = schema.get("required", [])
    for name in required if isinstance(required, list) else []:
        if isinstance(name, str) and name not in args:
            found.add((name, "present: the tool's argument schema requires it"))
    return sorted(found)


def tool_args_violations(input: Any, registry: Mapping[str, Any] | None) -> tuple[str, list[Violation]]:
    """(tool, violations) of the input's arguments against the catalog's schema for its
    tool; no violations when the registry has no schema for it or the input's shape is not
    one a schema applies to (the input contract refuses those)."""
    action = input.get("action") if _is_object(input) else None
    tool = action.get("tool") if _is_object(action) else None
    tools = registry.get("tools") if _is_object(registry) else None
    spec = tools.get(tool) if isinstance(tool, str) and _is_object(tools) else None
    schema = spec.get("args_schema") if _is_object(spec) else None
    if schema is None or not _is_object(schema):  # the usual case: the catalog gives no schema
        return str(tool), []
    args = action.get("args", {}) if _is_object(action) else None
    if not _is_object(args):
        return str(tool), []
    return str(tool), args_violations(args, schema)


def _is_object(value: Any) -> TypeGuard[Mapping[str, Any]]:
    # On every decision: a plain dict skips the Mapping ABC check, which runs Python code.
    return type(value) is dict or isinstance(value, Mapping)


def malformed_args_result(tool: str, violations: list[Violation]) -> dict[str, Any]:
    """The deny for arguments outside the tool's schema, one reason per violation, with the
    pack's rule id and message."""
    reasons = [
        {"rule": "malformed-args", "message": f"Argument args.{name} of tool {tool} must be {expectation}",
         "controls": list(CONTROLS)}
        for name, expectation in violations
    ]
    return {"allow": False, "effect": "deny", "reasons": reasons, "obligations": {"log": True, "mask": []}}
