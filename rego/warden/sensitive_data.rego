# Sensitive values in tool arguments: credentials are refused (an agent must never
# pass a secret through a tool call) and payment card numbers are masked in the audit
# log. Both are found by walking every string in input.action.args.
package warden

import rego.v1

secret_patterns := {
	"AWS access key id": `\b(AKIA|ASIA)[0-9A-Z]{16}\b`,
	"private key": `-----BEGIN [A-Z ]*PRIVATE KEY-----`,
	"GitHub token": `\bgh[pousr]_[A-Za-z0-9]{36,}\b`,
	"Slack token": `\bxox[abprs]-[A-Za-z0-9-]{10,}`,
	"Stripe live key": `\b[rs]k_live_[A-Za-z0-9]{16,}`,
	"Google API key": `\bAIza[0-9A-Za-z_-]{35}\b`,
}

# Every string in the arguments, with its JSON pointer into the input document.
arg_strings contains [pointer, value] if {
	walk(args, [path, value])
	is_string(value)
	pointer := concat("/", array.concat(["", "action", "args"], [pointer_segment(p) | some p in path]))
}

# RFC 6901: "~" becomes "~0" before "/" becomes "~1".
pointer_segment(p) := replace(replace(p, "~", "~0"), "/", "~1") if is_string(p)

pointer_segment(p) := sprintf("%v", [p]) if not is_string(p)

secret_findings contains [pointer, kind] if {
	some [pointer, value] in arg_strings
	some kind, pattern in secret_patterns
	regex.match(pattern, value)
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
# title: Secrets found in arguments are masked in the audit log
# custom:
#   severity: high
#   controls: [hipaa.164.502(b), soc2.C1.1, soc2.CC6.7]
mask contains pointer if {
	some [pointer, _] in secret_findings
}

card_candidate_pattern := `\b(?:[0-9][ -]?){12,18}[0-9]\b`

card_pointers contains pointer if {
	some [pointer, value] in arg_strings
	some candidate in regex.find_n(card_candidate_pattern, value, -1)
	luhn_valid(replace(replace(candidate, " ", ""), "-", ""))
}

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
	total := sum([luhn_term(to_number(c), (n - 1) - i) | c := chars[i]])
	total % 10 == 0
}

luhn_term(d, pos) := d if pos % 2 == 0

luhn_term(d, pos) := d * 2 if {
	pos % 2 == 1
	d * 2 <= 9
}

luhn_term(d, pos) := (d * 2) - 9 if {
	pos % 2 == 1
	d * 2 > 9
}
