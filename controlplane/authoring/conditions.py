"""Argument conditions a rule template can be narrowed by, as JSON Schema, Rego and prose.

Every condition is written so that a value the rule cannot judge counts as matching: a
path with `..` matches a blocked prefix, an unparseable URL matches a blocked host, a
missing or malformed time is inside a quiet window. A block or hold never lapses because
an agent sent an odd shape (the library's input contract denies most of them anyway).
"""

from __future__ import annotations

import json

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:@*/+\-]{0,127}$"
HOST = r"^(\*\.)?[a-z0-9]([a-z0-9\-]{0,62})(\.[a-z0-9]([a-z0-9\-]{0,62}))*$"
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def strings(pattern: str = NAME, *, min_items: int = 1, description: str = "") -> dict:
    return {
        "type": "array", "minItems": min_items, "maxItems": 50, "uniqueItems": True,
        "items": {"type": "string", "pattern": pattern}, "description": description,
    }


WINDOW_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["from_hour", "to_hour"],
    "properties": {
        "from_hour": {"type": "integer", "minimum": 0, "maximum": 23, "description": "Start hour, UTC"},
        "to_hour": {"type": "integer", "minimum": 0, "maximum": 24, "description": "End hour (exclusive), UTC"},
        "days": {"type": "array", "uniqueItems": True, "items": {"enum": DAYS}, "description": "Only on these days (all when empty)"},
    },
}

ENVIRONMENTS = strings(r"^[a-z][a-z0-9_\-]{0,63}$", description="Only in these environments")

WHEN_SCHEMA = {
    "type": "object", "additionalProperties": False, "description": "Optional conditions; all given must hold",
    "properties": {
        "path_prefixes": strings(r"^/[\x21-\x7e]{0,200}$", description="Argument `path` starts with one of these"),
        "hosts": strings(HOST, description="The host of argument `url` (or `host`) is one of these; *.example.com matches subdomains"),
        "amount_over": {
            "type": "object", "additionalProperties": False, "required": ["limit"],
            "properties": {
                "limit": {"type": "number", "minimum": 0, "maximum": 9007199254740992},
                "currency": {"type": "string", "pattern": r"^[A-Z]{3}$"},
            },
            "description": "Argument `amount` is over the limit (in argument `currency`, when given)",
        },
        "recipient_domains": strings(HOST, description="A recipient in `to`, `cc` or `bcc` is at one of these domains"),
        "branch_patterns": strings(r"^[A-Za-z0-9_.*/\-]{1,200}$", description="Argument `branch` (or `ref`) matches one of these globs"),
        "time_window": WINDOW_SCHEMA,
        "environments": ENVIRONMENTS,
        "agent_teams": strings(description="Only agents of these teams (registry)"),
        "risk_tiers": strings(description="Only agents of these risk tiers (registry)"),
    },
}


def literal(value) -> str:
    """A Rego literal: JSON is valid Rego for strings, numbers, arrays and objects."""
    return json.dumps(value, ensure_ascii=True, sort_keys=True)


def rego_set(values) -> str:
    return "{" + ", ".join(literal(v) for v in values) + "}" if values else "set()"


def hours_phrase(window: dict) -> str:
    days = window.get("days") or []
    text = f"between {window['from_hour']:02d}:00 and {window['to_hour']:02d}:00 UTC"
    return f"{text} on {', '.join(days)}" if days else text


def _number(value: float) -> str:
    return f"{value:,}" if float(value) != int(value) else f"{int(value):,}"


def phrases(when: dict) -> list[str]:
    """Plain-language pieces, in the order the form shows the conditions."""
    out = []
    if when.get("path_prefixes"):
        out.append("on paths under " + ", ".join(when["path_prefixes"]))
    if when.get("hosts"):
        out.append("to " + ", ".join(when["hosts"]))
    if when.get("amount_over"):
        over = when["amount_over"]
        out.append(f"over {_number(over['limit'])}" + (f" {over['currency']}" if over.get("currency") else ""))
    if when.get("recipient_domains"):
        out.append("to recipients at " + ", ".join(when["recipient_domains"]))
    if when.get("branch_patterns"):
        out.append("on branches " + ", ".join(when["branch_patterns"]))
    if when.get("time_window"):
        out.append(hours_phrase(when["time_window"]))
    if when.get("environments"):
        out.append("in " + ", ".join(when["environments"]))
    if when.get("agent_teams"):
        out.append("by agents of team " + " or ".join(when["agent_teams"]))
    if when.get("risk_tiers"):
        out.append("by agents of risk tier " + " or ".join(when["risk_tiers"]))
    return out


def rego(when: dict) -> tuple[list[str], list[str]]:
    """(body lines for the rule, helper rules) for the conditions in `when`."""
    body: list[str] = []
    helpers: list[str] = []
    if when.get("path_prefixes"):
        body.append("path_matches")
        helpers.append(f"""path_prefixes := {literal(when["path_prefixes"])}

# A path that is not plainly absolute (`..`, `//`, `/./`, relative) matches: it could name a blocked one.
path_matches if {{
	path := input.action.args.path
	is_string(path)
	some prefix in path_prefixes
	startswith(path, prefix)
}}

path_matches if {{
	path := input.action.args.path
	is_string(path)
	regex.match(`(^[^/])|(//)|(/\\.\\.?(/|$))`, path)
}}""")
    if when.get("hosts"):
        body.append("host_matches")
        helpers.append(f"""hosts := {rego_set(when["hosts"])}

target_hosts contains lower(input.action.args.host) if is_string(input.action.args.host)

target_hosts contains lower(parts[1]) if {{
	url := input.action.args.url
	is_string(url)
	parts := regex.find_all_string_submatch_n(`^[A-Za-z][A-Za-z0-9+.\\-]*://(?:[^/?#@]*@)?([^/:?#@]+)`, url, 1)[0]
}}

host_matches if {{
	some pattern in hosts
	some host in target_hosts
	host_pattern_matches(pattern, host)
}}

# A URL whose host cannot be read matches: it could name a blocked host.
host_matches if {{
	is_string(input.action.args.url)
	count(target_hosts) == 0
}}

host_pattern_matches(pattern, host) if pattern == host

host_pattern_matches(pattern, host) if {{
	startswith(pattern, "*.")
	endswith(host, substring(pattern, 1, -1))
}}""")
    if when.get("amount_over"):
        over = when["amount_over"]
        body.append("amount_over_limit")
        currency = ""
        if over.get("currency"):
            currency = f"""
	currency := input.action.args.currency
	is_string(currency)
	upper(currency) == {literal(over["currency"])}"""
        helpers.append(f"""amount_limit := {literal(over["limit"])}

amount_over_limit if {{
	amount := input.action.args.amount
	is_number(amount)
	amount > amount_limit{currency}
}}

# An amount that is not a number (a string, an object) cannot be compared: it matches.
amount_over_limit if {{
	amount := input.action.args.amount
	not is_number(amount)
}}""")
    if when.get("recipient_domains"):
        body.append("recipient_matches")
        helpers.append(f"""recipient_domains := {rego_set(when["recipient_domains"])}

recipients contains address if {{
	some field in ["to", "cc", "bcc"]
	value := input.action.args[field]
	is_string(value)
	some address in regex.split(`[,;]`, value)
}}

recipients contains address if {{
	some field in ["to", "cc", "bcc"]
	values := input.action.args[field]
	is_array(values)
	some address in values
	is_string(address)
}}

recipient_matches if {{
	some address in recipients
	domain := lower(trim_right(trim_space(regex.replace(address, `^.*@`, "")), ">"))
	some pattern in recipient_domains
	domain_matches(pattern, domain)
}}

domain_matches(pattern, domain) if pattern == domain

domain_matches(pattern, domain) if endswith(domain, concat("", [".", trim_prefix(pattern, "*.")]))""")
    if when.get("branch_patterns"):
        body.append("branch_matches")
        helpers.append(f"""branch_patterns := {literal(when["branch_patterns"])}

target_branches contains trim_prefix(input.action.args.branch, "refs/heads/") if is_string(input.action.args.branch)

target_branches contains trim_prefix(input.action.args.ref, "refs/heads/") if is_string(input.action.args.ref)

branch_matches if {{
	some pattern in branch_patterns
	some branch in target_branches
	glob.match(pattern, ["/"], branch)
}}""")
    if when.get("time_window"):
        body.append("in_time_window")
        helpers.append(window_rego(when["time_window"]))
    if when.get("environments"):
        body.append("in_environment")
        helpers.append(f"""environments := {rego_set(when["environments"])}

# The bundle's own environment is authoritative; the input's is used when the bundle has none.
in_environment if data.warden_registry.environment in environments

in_environment if {{
	not data.warden_registry.environment
	input.context.environment in environments
}}""")
    if when.get("agent_teams"):
        body.append("data.warden_registry.agents[input.agent.id].team in agent_teams")
        helpers.append(f"agent_teams := {rego_set(when['agent_teams'])}")
    if when.get("risk_tiers"):
        body.append("data.warden_registry.agents[input.agent.id].risk_tier in risk_tiers")
        helpers.append(f"risk_tiers := {rego_set(when['risk_tiers'])}")
    return body, helpers


# Dates that exist (Feb 29 in years divisible by 4), hours 00-23, offsets up to 23:59.
RFC3339 = (
    r"^[0-9]{4}-(((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]))|((0[13-9]|1[0-2])-(29|30))|((0[13578]|1[02])-31)"
    r"|(02-29))T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
LEAP = r"^[0-9]{2}([02468][048]|[13579][26])-02-29"


def window_rego(window: dict) -> str:
    start, end = window["from_hour"], window["to_hour"]
    # A window past midnight (22 to 6) is two ranges.
    if start < end:
        hours = f"hour >= {start}\n\thour < {end}"
    else:
        hours = f"not hour_between(hour, {end}, {start})"
    days = window.get("days") or []
    day_line = f"\n\ttime.weekday(now) in {rego_set(days)}" if days else ""
    return f"""# The decision's time is context.time (RFC 3339); hours are UTC.
# Parsed only when it is a valid RFC 3339 time (a failing parse is an error in one engine and
# undefined in another); anything else is unreadable.
decision_time := time.parse_rfc3339_ns(input.context.time) if {{
	is_string(input.context.time)
	regex.match(rfc3339_pattern, input.context.time)
	not non_leap_february_29
}}

non_leap_february_29 if {{
	startswith(substring(input.context.time, 4, 6), "-02-29")
	not regex.match(`{LEAP}`, input.context.time)
}}

rfc3339_pattern := `{RFC3339}`

in_time_window if {{
	now := decision_time
	hour := time.clock(now)[0]
	{hours}{day_line}
}}

# Without a readable time the window cannot be ruled out.
in_time_window if not decision_time

hour_between(hour, low, high) if {{
	hour >= low
	hour < high
}}"""
