# The input contract (docs/policies.md, "Input contract"): every field a rule judges must
# have the shape the rule can judge, or the action is denied with a reason naming the
# field. A rule that cannot read a value must never be the reason an action is allowed.
#
# The same contract is checked in Python by agents_sdk.engine.contract before evaluation;
# the pack enforces it itself so that a real OPA sidecar gives the same answer.
#
# Engine errors: a builtin that fails inside a rule makes that rule undefined in OPA's
# default mode and in regorus' compiled VM. Every builtin call in this pack is therefore
# guarded by the types and characters this contract establishes.
package warden

import rego.v1

max_number := 9007199254740992 # 2^53: larger numbers are not exact in every engine and client

# A value as message text, the same in every engine: a string as it is, a whole number
# within ±2^53 in digits, anything else by its type. sprintf's %v writes numbers as each
# engine holds them (OPA: 2^64+1 exact and 1e+308; regorus: 18446744073709552000 and 309
# digits, "-0" for -0.0) and json.marshal differs likewise, so input values reach
# messages only through this. (regorus' %d writes -5 as "--5": the sign is put in here.)
shown(x) := x if {
	is_string(x)
} else := format_int(abs(x), 10) if {
	exact_whole(x)
	x >= 0
} else := concat("", ["-", format_int(abs(x), 10)]) if {
	exact_whole(x)
} else := sprintf("(%s)", [type_name(x)])

exact_whole(x) if {
	is_number(x)
	abs(x) <= max_number
	x == floor(x)
}

# Printable ASCII without space: no control characters (NUL, CR, LF, tab, DEL), no
# Unicode, whose case mapping and normalisation differ between Go, Rust and Python.
# Checked with trim instead of a regex: trim removes leading and trailing characters of its
# cutset (code points, in OPA as in regorus), so nothing is left exactly when every character
# is one of them; regorus builds a regex at every call (~50 k VM instructions), trim costs ~1 k.
printable_ascii(s) if {
	s != ""
	trim(s, printable_ascii_characters) == ""
}

# The 94 characters from "!" (0x21) to "~" (0x7e), in order, and the same after a space
# (prechecks_test.rego checks both).
printable_ascii_characters := "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"

# Printable ASCII and spaces (the empty string too).
printable_text(s) if trim(s, printable_text_characters) == ""

printable_text_characters := " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"

input_shape_violations contains ["input", "a JSON object"] if not input_is_object

# Most inputs keep the contract: one rule body says so (input_well_formed implies that no
# rule of input_shape_violations holds), and only other inputs go through the ten rules
# that name the field at fault. The compiled VM pays for every rule definition it enters.
input_violations contains violation if {
	not input_well_formed
	some violation in input_shape_violations
}

input_well_formed if {
	is_object(input)
	is_object(input.agent)
	is_object(input.action)
	is_object(object.get(input.action, "args", {}))
	is_object(object.get(input, "context", {}))
	identifiers_printable

	# strings_array and exact_count written out: a function call costs the VM ~7 k
	# instructions, more than the checks themselves.
	scopes := object.get(input.agent, "scopes", [])
	is_array(scopes)
	every scope in scopes {
		is_string(scope)
	}
	on_behalf_of := object.get(context, "on_behalf_of", [])
	is_array(on_behalf_of)
	every delegator in on_behalf_of {
		is_string(delegator)
	}
	is_string(object.get(context, "approval_token", ""))
	counters_well_formed
}

counters_well_formed if {
	all_counters := object.get(context, "counters", {})
	is_object(all_counters)
	every counters in all_counters {
		is_object(counters)
		every used in counters {
			is_number(used)
			used >= 0
			used <= max_number
			used == floor(used)
		}
	}
}

# Helper rules instead of `not is_object(input)`: OPA hoists a reference out of `not`
# (open-policy-agent/opa#1877), so the expression would be undefined for absent values.
input_is_object if is_object(input)

input_shape_violations contains [field, "an object"] if {
	some field in ["agent", "action"]
	not is_object(object.get(request, field, null))
}

input_shape_violations contains [field, "an object when present"] if {
	some [field, path] in [["action.args", ["action", "args"]], ["context", ["context"]]]
	value := object.get(request, path, {})
	not is_object(value)
}

input_shape_violations contains [field, "a non-empty string of printable ASCII"] if {
	not identifiers_printable
	some [field, path] in [["agent.id", ["agent", "id"]], ["action.tool", ["action", "tool"]]]
	not identifier_at(path)
}

# Both identifiers in one check; the field at fault is looked for only when this fails.
# One trim over both (each is printable ASCII exactly when their concatenation is), not
# two calls of printable_ascii: the compiled VM pays ~7 k instructions per function call.
identifiers_printable if {
	agent_id != ""
	tool != ""
	trim(concat("", [agent_id, tool]), printable_ascii_characters) == ""
}

identifier_at(path) if {
	value := object.get(request, path, null)
	is_string(value)
	printable_ascii(value)
}

input_shape_violations contains ["agent.scopes", "an array of strings when present"] if {
	value := object.get(request, ["agent", "scopes"], [])
	not strings_array(value)
}

input_shape_violations contains ["context.on_behalf_of", "an array of agent ids when present"] if {
	value := object.get(context, "on_behalf_of", [])
	not strings_array(value)
}

input_shape_violations contains ["context.approval_token", "a string when present"] if {
	value := object.get(context, "approval_token", "")
	not is_string(value)
}

input_shape_violations contains [sprintf("context.counters.%s.%s", [subject, name]), "a whole number from 0 to 2^53"] if {
	all_counters := object.get(context, "counters", {})
	is_object(all_counters)
	some subject, counters in all_counters
	is_object(counters)
	some name, used in counters
	not exact_count(used)
}

input_shape_violations contains [sprintf("context.counters.%s", [subject]), "an object of counters"] if {
	all_counters := object.get(context, "counters", {})
	is_object(all_counters)
	some subject, counters in all_counters
	not is_object(counters)
}

input_shape_violations contains ["context.counters", "an object when present"] if {
	not is_object(object.get(context, "counters", {}))
}

exact_count(n) if {
	is_number(n)
	n >= 0
	n <= max_number
	n == floor(n)
}

strings_array(value) if {
	is_array(value)
	every item in value {
		is_string(item)
	}
}

# METADATA
# title: Input that does not follow the input contract is refused
# description: A field a rule cannot judge (missing, of another type, with control characters) is never a reason to allow.
# custom:
#   severity: high
#   controls: [eu_ai_act.art15(4), hipaa.164.312(a)(1)]
deny contains {
	"rule": "malformed-input",
	"message": sprintf("Input field input.%s must be %s", [field, expectation]),
	"controls": ["eu_ai_act.art15(4)", "hipaa.164.312(a)(1)"],
} if {
	some [field, expectation] in input_violations
}

# -- argument schemas per tool category ------------------------------------------------
#
# Each argument that names what a rule judges (a file, a URL, a recipient, a git ref, a
# command) is listed here under every name tools use for it; all of them are judged.
# Argument names themselves must be lowercase ASCII, so "Path" or "ＵＲＬ" cannot stand in.

file_argument_names := {"path", "file", "filename", "file_path", "target", "dest", "destination", "src", "source", "new_path", "old_path", "dir", "directory"}

url_argument_names := {"url", "uri", "endpoint", "href", "link", "base_url"}

recipient_argument_names := {"to", "cc", "bcc", "reply_to", "recipients"}

ref_argument_names := {"branch", "refspec", "ref", "remote_ref", "target_branch", "branches", "refspecs"}

command_argument_names := {"cmd", "commands", "script", "argv", "args"}

judged_category := tool_spec.category

judged_category := "file" if {
	not tool_spec.category
	tool in destructive_file_tools
}

args_violations contains [key, "a lowercase ASCII name"] if {
	judged_category in {"file", "network", "email", "git_push", "shell"}
	some key, _ in args
	not lowercase_name(key)
}

# ^[a-z0-9_]+$ (trim: see printable_ascii).
lowercase_name(key) if {
	key != ""
	trim(key, "abcdefghijklmnopqrstuvwxyz0123456789_") == ""
}

# The checks of one tool category are reached only for a tool of that category, and a
# catalog schema's only for a tool that has one: the compiled VM pays for every rule
# definition it enters, so a decision does not enter those of other categories. Each
# category's rules also test the category themselves (the gate is only a shortcut).
args_violations contains violation if {
	judged_category == "file"
	some violation in file_args_violations
}

args_violations contains violation if {
	judged_category == "network"
	some violation in network_args_violations
}

args_violations contains violation if {
	judged_category == "email"
	some violation in email_args_violations
}

args_violations contains violation if {
	judged_category == "git_push"
	some violation in git_args_violations
}

args_violations contains violation if {
	judged_category == "shell"
	some violation in shell_args_violations
}

args_violations contains violation if {
	arg_schema
	some violation in schema_args_violations
}

# Files: each file-naming argument is one path string; "paths" is an array of them.
file_args_violations contains [name, "one path string (use args.paths for several)"] if {
	judged_category == "file"
	some name, value in args # not args[name]: regorus binds an absent member and goes on
	name in file_argument_names
	not is_string(value)
}

file_args_violations contains ["paths", "an array of path strings"] if {
	judged_category == "file"
	some "paths", value in args
	not strings_array(value)
}

file_args_violations contains ["path", "present: a file tool must name its file"] if {
	judged_category == "file"
	count(action_paths) == 0
}

# URLs: each URL-naming argument is one string; "urls" is an array of them.
network_args_violations contains [name, "one URL string (use args.urls for several)"] if {
	judged_category == "network"
	some name, value in args # not args[name]: regorus binds an absent member and goes on
	name in url_argument_names
	not is_string(value)
}

network_args_violations contains ["urls", "an array of URL strings"] if {
	judged_category == "network"
	some "urls", value in args
	not strings_array(value)
}

# Recipients: a string (one address or a comma-separated list) or an array of strings.
email_args_violations contains [name, "an address string or an array of address strings"] if {
	judged_category == "email"
	some name, value in args # not args[name]: regorus binds an absent member and goes on
	name in recipient_argument_names
	not recipient_value(value)
}

recipient_value(value) if is_string(value)

recipient_value(value) if strings_array(value)

email_args_violations contains ["headers", "absent: put recipients in to, cc or bcc"] if {
	judged_category == "email"
	some "headers", _ in args
}

# git refs: a string or an array of strings.
git_args_violations contains [name, "a ref string or an array of ref strings"] if {
	judged_category == "git_push"
	some name, value in args # not args[name]: regorus binds an absent member and goes on
	name in ref_argument_names
	not recipient_value(value)
}

git_args_violations contains ["branch", "present: a push must name its branch or refspec"] if {
	judged_category == "git_push"
	count(ref_values) == 0
}

# Shell: the command is one string in args.command, nothing else.
shell_args_violations contains ["command", "a string"] if {
	judged_category == "shell"
	not shell_command
}

shell_args_violations contains [name, "absent: the command goes in args.command"] if {
	judged_category == "shell"
	some name, _ in args
	name in command_argument_names
}

args_violations contains [name, "free of control characters (NUL, CR, LF, tab)"] if {
	some [name, value] in judged_strings
	not value in printable_judged_strings
	regex.match(`[\x00-\x1f\x7f]`, value)
}

# The judged strings made of printable ASCII and spaces alone: one check per string, which
# answers for the control characters above, canonical paths (files.rego) and printable URLs
# (egress.rego) alike.
printable_judged_strings contains value if {
	some [_, value] in judged_strings
	printable_text(value)
}

# [argument name, string] for every string a rule judges by its text. Each source holds
# strings only for a tool of its category (paths: for a tool of any category, whatever
# its value), so the category is tested first: the VM pays for every rule it calls.
judged_strings contains [name, value] if {
	some [name, value] in action_path_values
}

judged_strings contains [name, value] if {
	judged_category == "network"
	some [name, value] in url_values
}

judged_strings contains [name, value] if {
	judged_category == "email"
	some [name, value] in recipient_values
}

judged_strings contains [name, value] if {
	judged_category == "git_push"
	some [name, value] in ref_values
}

judged_strings contains ["command", args.command] if {
	judged_category == "shell"
	is_string(args.command)
}

# METADATA
# title: Tool arguments that do not follow the tool's argument schema are refused
# description: Lists where one value is expected, other argument names, control characters: whatever a rule cannot judge.
# custom:
#   severity: high
#   controls: [eu_ai_act.art15(4), eu_ai_act.art15(5), hipaa.164.312(a)(1)]
deny contains {
	"rule": "malformed-args",
	"message": sprintf("Argument args.%s of tool %s must be %s", [name, tool, expectation]),
	"controls": ["eu_ai_act.art15(4)", "eu_ai_act.art15(5)", "hipaa.164.312(a)(1)"],
} if {
	some [name, expectation] in args_violations
}
