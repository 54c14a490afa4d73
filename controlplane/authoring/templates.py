"""The catalog of rule templates: parameters (JSON Schema), plain-language preview, Rego.

A template turns a few answers ("which tools", "over what amount", "how many approvers")
into an organisation module `package warden.org.<name>` with METADATA (title, owner,
controls) and, from the author's examples, its own test module (controlplane.authoring.
examples). The generated module is ordinary Rego: an engineer may edit it afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

import jsonschema

from controlplane.authoring import conditions as cond
from controlplane.authoring.conditions import literal, rego_set, strings
from controlplane.core.exceptions import InvalidInput

RULE_NAME = r"^[a-z][a-z0-9_]{0,62}$"
CONTROL = r"^[a-z0-9_]+\.[A-Za-z0-9_.()\-]{1,60}$"

COMMON_PROPERTIES = {
    "name": {"type": "string", "pattern": RULE_NAME, "description": "Module name: package warden.org.<name>"},
    "title": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^[^\n\r#]*$"},
    "owner": {"type": "string", "minLength": 3, "maxLength": 200, "pattern": r"^[^\s\n\r#]+$", "description": "Who owns the rule (an e-mail or team)"},
    "controls": {"type": "array", "uniqueItems": True, "maxItems": 20, "items": {"type": "string", "pattern": CONTROL}},
    "message": {"type": "string", "maxLength": 300, "pattern": r"^[^\n\r]*$", "description": "What the agent and the audit log are told"},
    "log_only": {"type": "boolean", "description": "Evaluate and log, do not enforce"},
}
TOOLS = strings(cond.NAME, description="Tool names from the catalog")
EFFECT = {"enum": ["deny", "hold"], "description": "Block the call, or hold it for a person's approval"}


@dataclass(frozen=True)
class Template:
    key: str
    title: str
    description: str
    properties: dict
    required: tuple[str, ...]
    sentence: Callable[[dict], str]
    body: Callable[[dict], tuple[str, list[str], list[str]]]  # (rule head kind, body lines, helpers)

    @property
    def schema(self) -> dict:
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": self.title, "description": self.description, "type": "object",
            "additionalProperties": False,
            "required": ["name", "owner", *self.required],
            "properties": {**COMMON_PROPERTIES, **self.properties},
        }


def _tools_phrase(tools: list[str] | None) -> str:
    if not tools:
        return "Calls to any tool"
    return "Calls to " + (tools[0] if len(tools) == 1 else ", ".join(tools[:-1]) + " or " + tools[-1])


def _with_conditions(subject: str, when: dict) -> str:
    return " ".join([subject, *cond.phrases(when or {})])


APPROVERS = {1: "one approver", 2: "two approvers", 3: "three approvers", 4: "four approvers", 5: "five approvers"}


def _effect_phrase(effect: str, quorum: int = 1) -> str:
    return "are blocked" if effect == "deny" else f"wait for {APPROVERS[quorum]}"


def _tool_line(tools: list[str] | None) -> list[str]:
    return ["input.action.tool in tools"] if tools else []


def _tool_helper(tools: list[str] | None) -> list[str]:
    return [f"tools := {rego_set(tools)}"] if tools else []


def _block_body(p: dict):
    lines, helpers = cond.rego(p.get("when") or {})
    kind = "deny" if p.get("effect", "deny") == "deny" else "approval_required"
    return kind, _tool_line(p["tools"]) + lines, _tool_helper(p["tools"]) + helpers


def _approval_body(p: dict):
    lines, helpers = cond.rego(p.get("when") or {})
    return "approval_required", _tool_line(p["tools"]) + lines, _tool_helper(p["tools"]) + [f"quorum := {p.get('quorum', 1)}"] + helpers


def _rate_body(p: dict):
    counter = f"calls_per_{p['window']}"
    lines = _tool_line(p.get("tools")) + [f"used := input.context.counters.{p['per']}.{counter}", "is_number(used)", "used >= limit"]
    return "deny", lines, _tool_helper(p.get("tools")) + [f"limit := {p['limit']}"]


def _egress_body(p: dict):
    lines = _tool_line(p["tools"]) + ["not host_allowed"]
    helpers = _tool_helper(p["tools"]) + [f"""allowed_hosts := {rego_set(p["allow_hosts"])}

target_hosts contains lower(input.action.args.host) if is_string(input.action.args.host)

target_hosts contains lower(parts[1]) if {{
	url := input.action.args.url
	is_string(url)
	parts := regex.find_all_string_submatch_n(`^[A-Za-z][A-Za-z0-9+.\\-]*://(?:[^/?#@]*@)?([^/:?#@]+)`, url, 1)[0]
}}

# Every host the call names must be allowed; a call naming none (an unreadable URL) is not.
host_allowed if {{
	count(target_hosts) > 0
	every host in target_hosts {{
		some pattern in allowed_hosts
		host_pattern_matches(pattern, host)
	}}
}}

host_pattern_matches(pattern, host) if pattern == host

host_pattern_matches(pattern, host) if {{
	startswith(pattern, "*.")
	endswith(host, substring(pattern, 1, -1))
}}"""]
    return "deny", lines, helpers


def _mask_body(p: dict):
    return "mask", _tool_line(p.get("tools")), _tool_helper(p.get("tools")) + [f"masked_fields := {rego_set(p['fields'])}"]


def _sequence_body(p: dict):
    kind = "deny" if p.get("effect", "deny") == "deny" else "approval_required"
    lines = _tool_line(p["tools"]) + ["earlier_step_seen"]
    helpers = _tool_helper(p["tools"]) + [f"""after_tools := {rego_set(p.get("after_tools") or [])}

after_labels := {rego_set(p.get("after_labels") or [])}

# The enforcement point passes the session so far: context.session.tools (tools called)
# and context.session.labels (data labels read), see docs/authoring.md.
earlier_step_seen if {{
	some called in input.context.session.tools
	called in after_tools
}}

earlier_step_seen if {{
	some label in input.context.session.labels
	label in after_labels
}}"""]
    return kind, lines, helpers


def _quiet_body(p: dict):
    when = {"time_window": p["window"], **({"environments": p["environments"]} if p.get("environments") else {})}
    lines, helpers = cond.rego(when)
    kind = "deny" if p.get("effect", "deny") == "deny" else "approval_required"
    return kind, _tool_line(p.get("tools")) + lines, _tool_helper(p.get("tools")) + helpers


def _sequence_sentence(p: dict) -> str:
    earlier = []
    if p.get("after_tools"):
        earlier.append(f"calling {', '.join(p['after_tools'])}")
    if p.get("after_labels"):
        earlier.append(f"reading data labelled {', '.join(p['after_labels'])}")
    return f"{_tools_phrase(p['tools'])} after {' or '.join(earlier)} in the same session {_effect_phrase(p['effect'])}"


def _rate_sentence(p: dict) -> str:
    subject = "each agent" if p["per"] == "agent" else "each tool"
    tools = f" to {', '.join(p['tools'])}" if p.get("tools") else ""
    return f"Calls{tools} beyond {p['limit']:,} per {p['window']} for {subject} are blocked"


TEMPLATES: dict[str, Template] = {t.key: t for t in [
    Template(
        "block_tool", "Block or hold a tool", "Block a tool, or hold it for approval, optionally only when its arguments match",
        {"tools": TOOLS, "effect": EFFECT, "when": cond.WHEN_SCHEMA}, ("tools", "effect"),
        lambda p: f"{_with_conditions(_tools_phrase(p['tools']), p.get('when') or {})} {_effect_phrase(p['effect'])}",
        _block_body,
    ),
    Template(
        "require_approval", "Require approval", "Hold a tool's calls until enough people approve",
        {"tools": TOOLS, "quorum": {"type": "integer", "minimum": 1, "maximum": 5}, "when": cond.WHEN_SCHEMA}, ("tools", "quorum"),
        lambda p: f"{_with_conditions(_tools_phrase(p['tools']), p.get('when') or {})} {_effect_phrase('hold', p['quorum'])}",
        _approval_body,
    ),
    Template(
        "rate_limit", "Rate limit", "Block calls beyond a number per minute or hour, counted per agent or per tool",
        {"per": {"enum": ["agent", "tool"]}, "window": {"enum": ["minute", "hour"]}, "limit": {"type": "integer", "minimum": 0, "maximum": 1000000}, "tools": {**TOOLS, "minItems": 0}},
        ("per", "window", "limit"), _rate_sentence, _rate_body,
    ),
    Template(
        "restrict_egress", "Restrict egress", "Allow a tool to reach only the listed hosts",
        {"tools": TOOLS, "allow_hosts": strings(cond.HOST)}, ("tools", "allow_hosts"),
        lambda p: f"{_tools_phrase(p['tools'])} may reach only {', '.join(p['allow_hosts'])}; any other host is blocked",
        _egress_body,
    ),
    Template(
        "mask_fields", "Mask fields", "Mask arguments in the audit log",
        {"tools": {**TOOLS, "minItems": 0}, "fields": strings(r"^[A-Za-z0-9_\-]{1,100}$")}, ("fields",),
        lambda p: f"The {', '.join(p['fields'])} argument{'s' if len(p['fields']) > 1 else ''} of {_tools_phrase(p.get('tools')).removeprefix('Calls to ').lower() if p.get('tools') else 'every tool'} {'are' if len(p['fields']) > 1 else 'is'} masked in the audit log",
        _mask_body,
    ),
    Template(
        "sequence_deny", "Deny after a sequence", "Block a tool later in a session that earlier called a tool or read data with a label",
        {"tools": TOOLS, "effect": EFFECT, "after_tools": {**strings(), "minItems": 0}, "after_labels": {**strings(), "minItems": 0}},
        ("tools", "effect"),
        _sequence_sentence,
        _sequence_body,
    ),
    Template(
        "quiet_hours", "Quiet hours", "Block or hold calls during set hours",
        {"tools": {**TOOLS, "minItems": 0}, "effect": EFFECT, "window": cond.WINDOW_SCHEMA, "environments": cond.ENVIRONMENTS},
        ("window", "effect"),
        lambda p: f"{_tools_phrase(p.get('tools'))} {cond.hours_phrase(p['window'])}" + (f" in {', '.join(p['environments'])}" if p.get("environments") else "") + f" {_effect_phrase(p['effect'])}",
        _quiet_body,
    ),
]}


def template(key: str) -> Template:
    if key not in TEMPLATES:
        raise InvalidInput(f"unknown template {key!r}; choose one of {', '.join(TEMPLATES)}", field="template")
    return TEMPLATES[key]


def validate(key: str, params: dict) -> dict:
    """The parameters, checked against the template's JSON Schema (400 naming the field)."""
    found = template(key)
    errors = sorted(jsonschema.Draft202012Validator(found.schema).iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        field = ".".join(str(p) for p in ["params", *first.absolute_path])
        raise InvalidInput(f"{field}: {first.message}", field=field)
    if key == "sequence_deny" and not (params.get("after_tools") or params.get("after_labels")):
        raise InvalidInput("params.after_tools: give earlier tools or data labels", field="params.after_tools")
    return params


def sentence(key: str, params: dict) -> str:
    """The plain-language preview: "Calls to pay_invoice over 10,000 EUR by agents of team finance wait for two approvers"."""
    return template(key).sentence(validate(key, params)) + "."


def rule_id(params: dict) -> str:
    return params["name"].replace("_", "-")


def module_source(key: str, params: dict) -> str:
    """The organisation module for the template and parameters."""
    found = template(key)
    params = validate(key, params)
    kind, lines, helpers = found.body(params)
    summary = sentence(key, params)
    title = params.get("title") or summary.rstrip(".")
    controls = params.get("controls") or []
    message = params.get("message") or summary
    header = [
        f'# Generated by Warden authoring from the "{key}" template. An engineer may edit it as',
        "# Rego; the console then shows it as a hand-written module.",
        f"package warden.org.{params['name']}",
        "",
        "import rego.v1",
        "",
    ]
    if params.get("log_only"):
        header += ["# Log-only: evaluated and logged with every decision, not enforced.", "log_only := true", ""]
    metadata = [
        "# METADATA",
        f"# title: {title}",
        f"# description: {summary}",
        "# custom:",
        f"#   owner: {params['owner']}",
        f"#   controls: [{', '.join(controls)}]",
        f"#   template: {key}",
    ]
    if key == "require_approval":
        metadata.append(f"#   quorum: {params['quorum']}")
    if kind == "mask":
        head = ['mask contains sprintf("/action/args/%s", [field]) if {', "\tsome field in masked_fields", "\tis_object(input.action.args)", "\tfield in object.keys(input.action.args)"]
        body_lines = [f"\t{line}" for line in lines]
        rule = head + body_lines + ["}"]
    else:
        reason = [f"{kind} contains {{", f'\t"rule": {literal(rule_id(params))},', f'\t"message": {literal(message)},', f'\t"controls": {literal(controls)},', "} if {"]
        rule = reason + [f"\t{line}" for line in lines] + ["}"]
    return "\n".join(header + metadata + rule + [""] + "\n\n".join(helpers).splitlines() + [""])


def module_kind(key: str, params: dict) -> str:
    """deny, approval_required or mask: the set the generated module adds to."""
    return template(key).body(validate(key, params))[0]
