# Sensitive values in tool arguments: credentials are refused (an agent must never
# pass a secret through a tool call) and payment card numbers are masked in the audit
# log. Both are found by visiting every string in input.action.args (down to 16 levels;
# deeper arguments that may hold one are refused), but only when a cheap pre-check over
# the arguments' JSON text says one could be there (see below).
package warden

import rego.v1

# Word boundaries are spelled as ASCII classes, not \b: regorus' \b is Unicode-aware and
# OPA's (RE2) is ASCII, so "éAKIA..." would be a key for one engine and not the other.
secret_patterns := {
	"AWS access key id": `(^|[^A-Za-z0-9_])(AKIA|ASIA)[0-9A-Z]{16}([^A-Za-z0-9_]|$)`,
	"private key": `-----BEGIN [A-Z ]*PRIVATE KEY-----`,
	"GitHub token": `(^|[^A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,}([^A-Za-z0-9_]|$)`,
	"Slack token": `(^|[^A-Za-z0-9_])xox[abprs]-[A-Za-z0-9-]{10,}`,
	"Stripe live key": `(^|[^A-Za-z0-9_])[rs]k_live_[A-Za-z0-9]{16,}`,
	"Google API key": `(^|[^A-Za-z0-9_])AIza[0-9A-Za-z_-]{35}([^A-Za-z0-9_]|$)`,
}

# Pre-checks, so that most decisions run one regex instead of seven per string (regex
# calls are most of a decision's cost). Each secret pattern above matches a string only if
# secret_text_pattern does (the same patterns without word boundaries, cut to their part
# made of [A-Za-z0-9 _-]); a card candidate below only in a string with 13 digits or more.
# Those characters are never escaped in JSON, so what holds for a string of the arguments
# holds for the arguments' JSON text (which has more text, keys and numbers, never less).
# When neither holds for the text, no string needs a look.
secret_text_pattern := `AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|PRIVATE KEY-----|gh[pousr]_[A-Za-z0-9]{36}|xox[abprs]-[A-Za-z0-9-]{10}|[rs]k_live_[A-Za-z0-9]{16}|AIza[0-9A-Za-z_-]{35}`

digit_erasers := {"0": "", "1": "", "2": "", "3": "", "4": "", "5": "", "6": "", "7": "", "8": "", "9": ""}

has_13_digits(text) if count(text) - count(strings.replace_n(digit_erasers, text)) >= 13

args_text := json.marshal(args)

context_text := json.marshal(context)

# One regex over the arguments' and the context's text (both JSON, so no match spans the
# seam): most decisions pay one pre-check for both, for plain and base64-encoded secrets.
input_may_hold_secret if {
	secret_literal_present
	regex.match(sensitive_text_pattern, input_text)
}

input_text := concat("", [args_text, context_text])

# Before that regex (~50 k VM instructions, most of it building the regex), a test for
# literals: every text sensitive_text_pattern matches holds one of these (each secret
# alternative's fixed prefix, or each base64 marker, holds one). Uppercase letters but T and
# Z, which timestamps carry; agents_sdk/tests/test_engine_secret_literals.py checks every
# alternative. A regex made of literals alone is cheap to build (~6 k VM instructions, where
# strings.replace_n erasing the 19 literals cost ~35 k) and matches exactly when the text
# holds one of them, in RE2 as in Rust's regex.
secret_literal_present if regex.match(secret_literal_pattern, input_text)

secret_literal_pattern := `A|B|F|G|H|L|U|V|X|ghp_|gho_|ghu_|ghs_|ghr_|xox|k_live_|dob1|doc1|docl`

# The two pre-checks for the arguments, each kept apart: a string's secret scans run only
# when the first holds, its card scan only when the second does (so a card number does
# not send every string through the secret patterns).
args_may_hold_secret if {
	input_may_hold_secret
	regex.match(sensitive_text_pattern, args_text)
}

args_may_hold_sensitive_text if args_may_hold_secret

sensitive_text_pattern := concat("|", [secret_text_pattern, base64_marker_pattern])

# OPA's json.marshal escapes <, >, &, U+2028 and U+2029 as \u003c etc. (Go's encoder),
# regorus writes them as they are: the escapes are dropped so both count the same digits.
go_json_escapes := {`\u003c`: "", `\u003e`: "", `\u0026`: "", `\u2028`: "", `\u2029`: ""}

# Only a text with an escape (`\u`) can hold one of them, and the digits are counted in the
# rule body (a function call costs the VM ~7 k instructions; regex.replace of the class
# [0-9], ASCII digits in RE2 and Rust's regex alike, ~10 k less than erasing ten digits).
args_may_hold_card if {
	not contains(args_text, `\u`)
	count(args_text) - count(regex.replace(args_text, `[0-9]`, "")) >= 13
}

args_may_hold_card if {
	contains(args_text, `\u`)
	has_13_digits(strings.replace_n(go_json_escapes, args_text))
}

args_may_hold_sensitive_text if args_may_hold_card

# Every string in the arguments, with its JSON pointer into the input document.
arg_strings contains [pointer, value] if {
	args_may_hold_sensitive_text
	some [pointer, value, _] in arg_nodes
	is_string(value)
}

# Object keys are text an agent controls too: a credential may be passed as a key.
arg_strings contains [pointer, key] if {
	args_may_hold_sensitive_text
	some [pointer, _, key] in arg_nodes
	is_string(key)
}

# The arguments' members down to 16 levels, each as [JSON pointer, value], level by level
# (Rego has no recursion, and walk() is left out so that compiled engines can run the pack).
# Flat arguments (no member an object, array or set) are their first level alone: the VM
# pays for every rule definition it enters, and the fifteen deeper levels are not entered.
arg_nodes := arg_nodes_1 if {
	not args_nested
} else := arg_nodes_1 | arg_nodes_2 | arg_nodes_3 | arg_nodes_4 | arg_nodes_5 | arg_nodes_6 | arg_nodes_7 | arg_nodes_8 | arg_nodes_9 | arg_nodes_10 | arg_nodes_11 | arg_nodes_12 | arg_nodes_13 | arg_nodes_14 | arg_nodes_15 | arg_nodes_16

arg_nodes_1 contains [concat("/", ["/action/args", pointer_segment(key)]), member, key] if {
	args_may_hold_sensitive_text
	some key, member in args
}

arg_nodes_2 contains [concat("/", [parent, pointer_segment(key)]), member, key] if {
	some [parent, node, _] in arg_nodes_1
	is_collection(node)
	some key, member in node
}

arg_nodes_3 contains [concat("/", [parent, pointer_segment(key)]), member, key] if {
	some [parent, node, _] in arg_nodes_2
	is_collection(node)
	some key, member in node
}

arg_nodes_4 contains [concat("/", [parent, pointer_segment(key)]), member, key] if {
	some [parent, node, _] in arg_nodes_3
	is_collection(node)
	some key, member in node
}

arg_nodes_5 contains [concat("/", [parent, pointer_segment(key)]), member, key] if {
	some [parent, node, _] in arg_nodes_4
	is_collection(node)
	some key, member in node
}

arg_nodes_6 contains [concat("/", [parent, pointer_segment(key)]), member, key] if {
	some [parent, node, _] in arg_nodes_5
	is_collection(node)
	some key, member in node
}

arg_nodes_7 contains [concat("/", [parent, pointer_segment(key)]), member, key] if {
	some [parent, node, _] in arg_nodes_6
	is_collection(node)
	some key, member in node
}

arg_nodes_8 contains [concat("/", [parent, pointer_segment(key)]), member, key] if {
	some [parent, node, _] in arg_nodes_7
	is_collection(node)
	some key, member in node
}

arg_nodes_9 contains [concat("/", [parent, pointer_segment(key)]), member, key] if {
	some [parent, node, _] in arg_nodes_8
	is_collection(node)
	some key, member in node
}

arg_nodes_10 contains [concat("/", [parent, pointer_segment(key)]), member, key] if {
	some [parent, node, _] in arg_nodes_9
	is_collection(node)
	some key, member in node
}

arg_nodes_11 contains [concat("/", [parent, pointer_segment(key)]), member, key] if {
	some [parent, node, _] in arg_nodes_10
	is_collection(node)
	some key, member in node
}

arg_nodes_12 contains [concat("/", [parent, pointer_segment(key)]), member, key] if {
	some [parent, node, _] in arg_nodes_11
	is_collection(node)
	some key, member in node
}

arg_nodes_13 contains [concat("/", [parent, pointer_segment(key)]), member, key] if {
	some [parent, node, _] in arg_nodes_12
	is_collection(node)
	some key, member in node
}

arg_nodes_14 contains [concat("/", [parent, pointer_segment(key)]), member, key] if {
	some [parent, node, _] in arg_nodes_13
	is_collection(node)
	some key, member in node
}

arg_nodes_15 contains [concat("/", [parent, pointer_segment(key)]), member, key] if {
	some [parent, node, _] in arg_nodes_14
	is_collection(node)
	some key, member in node
}

arg_nodes_16 contains [concat("/", [parent, pointer_segment(key)]), member, key] if {
	some [parent, node, _] in arg_nodes_15
	is_collection(node)
	some key, member in node
}

args_nested if {
	some [_, node, _] in arg_nodes_1
	is_collection(node)
}

is_collection(x) if is_object(x)

is_collection(x) if is_array(x)

is_collection(x) if is_set(x)

# Members nested deeper than arg_nodes reaches are not scanned, so when the pre-check
# matched, such arguments are refused rather than let through unchecked.
args_nested_too_deep if {
	args_nested
	some [_, node, _] in arg_nodes_16
	is_collection(node)
	count(node) > 0
	args_strings_may_hold_sensitive_text
}

# The card pre-check counts the digits of numbers as well, and the engines write numbers
# differently (OPA keeps 10^30 exact, 31 digits; regorus writes 1e+30, 3 digits): numbers
# never hold a card, but refusing on their digits would refuse in one engine only. So deep
# arguments are refused for the digits of their strings (keys too) alone, at any depth. (The
# secret pre-check cannot match a number's text: no secret or marker is made of [0-9.eE+-].)
args_strings_may_hold_sensitive_text if args_may_hold_secret

args_strings_may_hold_sensitive_text if {
	strings_text := concat("", regex.find_n(`"(?:[^"\\]|\\.)*"`, args_text, -1))
	has_13_digits(strings.replace_n(go_json_escapes, strings_text))
}

# RFC 6901: "~" becomes "~0" before "/" becomes "~1".
pointer_segment(p) := replace(replace(p, "~", "~0"), "/", "~1") if is_string(p)

pointer_segment(p) := sprintf("%v", [p]) if is_number(p)

secret_findings contains [pointer, kind] if {
	args_may_hold_secret
	some [pointer, value] in arg_strings
	regex.match(secret_text_pattern, value)
	some kind, pattern in secret_patterns
	regex.match(pattern, value)
}

# Base64-encoded credentials (RFC 4648 base64 and base64url, padded or not). Only base64
# that provably decodes to ASCII is decoded: in each 4-character group the 1st, 2nd and 3rd
# characters keep every byte's high bit clear, and the last group's padding bits are zero.
# regorus refuses a decoding that is not UTF-8 or has padding bits set, OPA does not; on
# this shape both decode to the same text and neither fails. Each run is decoded from each
# of its first four characters and from where a marker (below) places a secret's group, so
# text glued in front of it cannot shift the alignment.
# (base64 broken across lines is not decoded.)
base64_run_patterns := [`[A-Za-z0-9+/]{20,}`, `[A-Za-z0-9_-]{20,}`]

base64_ascii_pattern := `^(?:[A-Za-f][A-HQ-Xg-nw-z0-3][ABEFIJMNQRUVYZcdghklopstwx014589][A-Za-z0-9+/])*(?:[A-Za-f][A-HQ-Xg-nw-z0-3][AEIMQUYcgkosw048]=|[A-Za-f][AQgw]==)?$`

# The pre-check for them, folded into the secret pre-check above (one regex per decision):
# the base64 characters that encode a fixed part of some secret pattern (AKIA, ASIA, AIza,
# PRIVATE KEY, gh?_, xox?-, ?k_live_) at each of the three byte alignments, keeping only the
# characters made of that part's bits alone. Every base64 (or base64url: these characters
# hold no + or /) encoding of text a secret pattern matches contains one of them
# (agents_sdk/tests/test_engine_secrets_encoded.py derives and checks the list).
base64_marker_pattern := `4b3hhL|4b3hiL|4b3hwL|4b3hyL|4b3hzL|BS0lB|BSSVZBVEUgS0VZ|BSXph|BU0lB|FJem|FLSU|FTSU|JrX2xpdmVf|NrX2xpdmVf|QUklWQVRFIEtFW|QUl6Y|QUtJQ|QVNJQ|UFJJVkFURSBLRV|Z2h1X|Z2hvX|Z2hwX|Z2hyX|Z2hzX|c2tfbGl2ZV|cmtfbGl2ZV|dob1|doc1|docF|docl|dodV|eG94YS|eG94Yi|eG94cC|eG94ci|eG94cy|hveGEt|hveGIt|hveHAt|hveHIt|hveHMt|naG9f|naHBf|naHJf|naHNf|naHVf|ya19saXZlX|za19saXZlX`

# The decoded texts of the base64 runs in `text` that are ASCII by the pattern above.
base64_decodings(text) := {decoded |
	some pattern in base64_run_patterns
	some run in regex.find_n(pattern, text, -1)
	standard := strings.replace_n({"-": "+", "_": "/"}, run)
	some start in base64_starts(standard)
	body := substring(standard, start, count(standard))
	some spelling in base64_spellings(body)
	regex.match(base64_ascii_pattern, spelling)
	decoded := base64.decode(spelling)
	is_string(decoded) # a later use: see agents_sdk/engine/vm_safety.py
}

# Where a run's 4-character groups may start: its first four characters, and where a marker
# says an encoded secret's group starts (0, 2 or 3 characters before the marker, by its
# alignment), so that glued text that decodes to non-ASCII cannot hide what follows it.
base64_starts(run) := {0, 1, 2, 3} | {start |
	some marker in regex.find_n(base64_marker_pattern, run, -1)
	some back in [0, 2, 3]
	start := indexof(run, marker) - back
	start >= 0
}

# Whole groups only, and the text padded as RFC 7515 appendix C pads unpadded base64url
# (a remainder of one character is no byte: that spelling fails the ASCII pattern).
base64_spellings(body) := {
	substring(body, 0, count(body) - (count(body) % 4)),
	concat("", [body, ["", "!", "==", "="][count(body) % 4]]),
}

# [kind of secret] for the decoded text, when one of the patterns matches it.
encoded_secret_kinds(text) := {concat("", [kind, ", base64-encoded"]) |
	some decoded in base64_decodings(text)
	regex.match(secret_text_pattern, decoded)
	some kind, pattern in secret_patterns
	regex.match(pattern, decoded)
}

secret_findings contains [pointer, kind] if {
	args_may_hold_secret
	some [pointer, value] in arg_strings
	regex.match(base64_marker_pattern, value)
	some kind in encoded_secret_kinds(value)
}

# METADATA
# title: Credentials in tool arguments are refused
# custom:
#   severity: critical
#   controls: [eu_ai_act.art15(5), hipaa.164.312(a)(1), soc2.CC6.1, soc2.CC6.7]
deny contains {
	"rule": "secret-in-args",
	"message": sprintf("Argument %s looks like a credential (%s); pass credentials through the secret store, not tool arguments", [pointer, kind]),
	"controls": ["eu_ai_act.art15(5)", "hipaa.164.312(a)(1)", "soc2.CC6.1", "soc2.CC6.7"],
} if {
	some [pointer, kind] in secret_findings
}

# METADATA
# title: Arguments too deeply nested to scan for credentials are refused
# custom:
#   severity: high
#   controls: [eu_ai_act.art15(4), eu_ai_act.art15(5), soc2.CC6.1]
deny contains {
	"rule": "args-too-deep",
	"message": "Arguments nested deeper than 16 levels hold text that may be a credential or card number and cannot be checked",
	"controls": ["eu_ai_act.art15(4)", "eu_ai_act.art15(5)", "soc2.CC6.1"],
} if {
	args_nested_too_deep
}

# METADATA
# title: Secrets found in arguments are masked in the audit log
# custom:
#   severity: high
#   controls: [hipaa.164.502(b), soc2.C1.1, soc2.CC6.7]
mask contains pointer if {
	some [pointer, _] in secret_findings
}

# A card candidate is a run of whole digit groups: ASCII digits, single spaces or dashes
# between groups, 13 to 19 digits, and no ASCII letter, digit or _ glued to either end (ASCII
# boundaries for the same reason as above). Every such run is a candidate, overlapping ones
# too, so a card next to other numbers ("4111 1111 1111 1111 123", "4111111111111112
# 4111111111111111") is still found: a pattern that consumes the boundary after one match
# cannot see the next, and one that takes the longest run misses the card inside it.
# The pattern matches each chain of ASCII words joined by single separators that holds a
# digit, from the start of its first word to the end of its last (only those two words may
# hold letters), so a chain never starts or ends inside a word.
card_chain_pattern := `[A-Za-z0-9_]*[0-9](?:[0-9]|[ -][0-9])*[A-Za-z0-9_]*`

card_pointers contains pointer if {
	args_may_hold_card
	some [pointer, value] in arg_strings
	count(value) >= 13 # 13 digits at least
	some digits in card_numbers(value)
	luhn_valid(digits)
}

# The digits of each card candidate in a string: every run of consecutive all-digit groups of
# a chain with 13 to 19 digits.
card_numbers(value) := {digits |
	some chain in card_chains(value)
	count(chain) >= 13
	groups := split(replace(chain, "-", " "), " ")
	last := count(groups) - 1
	some i in numbers.range(0, last)
	some j in numbers.range(i, min([i + 18, last]))
	digits := concat("", array.slice(groups, i, j + 1))
	count(digits) >= 13
	count(digits) <= 19
	trim(digits, "0123456789") == ""
}

# A string that is one chain alone ("4111 1111 1111 1111": ASCII digits with single spaces or
# dashes between them) is the pattern's only match in it, so it needs no regex (~50 k VM
# instructions to build, at every call); any other string with 13 digits goes through it.
card_chains(value) := [value] if {
	trim(strings.replace_n({" ": "", "-": ""}, value), "0123456789") == ""
	trim(value, " -") == value
	not contains_any(value, ["  ", "--", " -", "- "])
} else := regex.find_n(card_chain_pattern, value, -1) if {
	has_13_digits(value)
} else := []

# METADATA
# title: Payment card numbers (Luhn-valid, 13 to 19 digits) are masked in the audit log
# custom:
#   severity: high
#   controls: [hipaa.164.502(b), hipaa.164.514(d), soc2.C1.1, soc2.CC6.7]
mask contains pointer if {
	some pointer in card_pointers
}

luhn_valid(digits) if {
	n := count(digits)
	n >= 13
	n <= 19
	chars := split(digits, "")

	# From the right, digits at even positions count as they are, at odd ones doubled
	# (minus 9 when over 9): index i is at position (n - 1) - i.
	kept := sum([to_number(chars[i]) | some i in numbers.range_step((n - 1) % 2, n - 1, 2)])
	doubled := sum([luhn_doubled[to_number(chars[i])] | some i in numbers.range_step(n % 2, n - 2, 2)])
	(kept + doubled) % 10 == 0
}

luhn_doubled := [0, 2, 4, 6, 8, 1, 3, 5, 7, 9]

# The context is agent-controlled text as well; it is not masked member by member, so a
# credential anywhere in it refuses the call (the same pattern on its JSON text, which
# has every string of the context and no fewer characters of them).
# METADATA
# title: Credentials in the input context are refused
# custom:
#   severity: critical
#   controls: [eu_ai_act.art15(5), hipaa.164.312(a)(1), soc2.CC6.1, soc2.CC6.7]
deny contains {
	"rule": "secret-in-context",
	"message": "The input context holds text that looks like a credential; pass credentials through the secret store",
	"controls": ["eu_ai_act.art15(5)", "hipaa.164.312(a)(1)", "soc2.CC6.1", "soc2.CC6.7"],
} if {
	context_holds_secret
}

context_holds_secret if {
	input_may_hold_secret
	regex.match(secret_text_pattern, context_text)
}

# Encoded in the context: its JSON text, with every escape (and what Go's encoder escapes
# and regorus' does not: <, >, &, U+2028, U+2029) made a space, so both engines see the
# same base64 runs (an escape such as \n in front of a run cannot shift its alignment).
context_holds_secret if {
	input_may_hold_secret
	regex.match(base64_marker_pattern, context_text)
	text := regex.replace(context_text, `\\(?:u[0-9a-fA-F]{4}|.)|[<>&\x{2028}\x{2029}]`, " ")
	count(encoded_secret_kinds(text)) > 0
}
