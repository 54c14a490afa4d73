# Irreversible actions wait for a person: payments, e-mail that leaves the company,
# pushes to protected branches, and tools the registry marks irreversible.
#
# A person's approval reaches the engines as bundle data (registry.approvals, keyed by
# approval token). It grants exactly one action: the same agent, tool and arguments,
# until it expires. The token is a reference, not a secret; the binding is the control.
package warden

import rego.v1

action_args := object.get(input.action, "args", {})

approval_granted if {
	grant := registry.approvals[context.approval_token]
	grant.agent_id == agent_id
	grant.tool == tool
	grant.args == action_args
	time.now_ns() < grant.expires_at_ns
}

# METADATA
# title: Payments require human approval
# custom:
#   severity: critical
#   controls: [eu_ai_act.art9, eu_ai_act.art14(1), eu_ai_act.art14(4)(d), hipaa.164.308(a)(3)(ii)(A), soc2.CC5.1]
approval_required contains {
	"rule": "payment-requires-approval",
	"message": sprintf("Payment through %s requires human approval", [tool]),
	"controls": [
		"eu_ai_act.art9", "eu_ai_act.art14(1)", "eu_ai_act.art14(4)(d)",
		"hipaa.164.308(a)(3)(ii)(A)", "soc2.CC5.1",
	],
} if {
	tool_spec.category == "payment"
}

email_recipients contains lower(r) if {
	some field in ["to", "cc", "bcc"]
	some r in as_list(args[field])
	is_string(r)
}

as_list(x) := x if is_array(x)

as_list(x) := [x] if not is_array(x)

default internal_email_domains := []

internal_email_domains := registry.internal_email_domains

internal_recipient(address) if {
	some domain in internal_email_domains
	endswith(address, concat("", ["@", lower(domain)]))
}

# METADATA
# title: E-mail to recipients outside the company requires human approval
# custom:
#   severity: high
#   controls: [eu_ai_act.art14(1), eu_ai_act.art14(4)(d), hipaa.164.308(a)(3)(ii)(A), soc2.CC5.1, soc2.CC6.7]
approval_required contains {
	"rule": "external-email-requires-approval",
	"message": sprintf("E-mail to %s requires human approval", [recipient]),
	"controls": [
		"eu_ai_act.art14(1)", "eu_ai_act.art14(4)(d)",
		"hipaa.164.308(a)(3)(ii)(A)", "soc2.CC5.1", "soc2.CC6.7",
	],
} if {
	tool_spec.category == "email"
	some recipient in email_recipients
	not internal_recipient(recipient)
}

default protected_branches := ["main", "master", "release/*"]

protected_branches := registry.protected_branches

# METADATA
# title: Pushes to protected branches require human approval
# custom:
#   severity: high
#   controls: [eu_ai_act.art14(1), eu_ai_act.art14(4)(d), soc2.CC5.1, soc2.CC8.1]
approval_required contains {
	"rule": "protected-branch-push",
	"message": sprintf("Push to protected branch %s requires human approval", [args.branch]),
	"controls": ["eu_ai_act.art14(1)", "eu_ai_act.art14(4)(d)", "soc2.CC5.1", "soc2.CC8.1"],
} if {
	tool_spec.category == "git_push"
	is_string(args.branch)
	some pattern in protected_branches
	glob.match(pattern, ["/"], args.branch)
}

# METADATA
# title: Tools the registry marks irreversible require human approval
# custom:
#   severity: high
#   controls: [eu_ai_act.art9, eu_ai_act.art14(1), eu_ai_act.art14(4)(d), hipaa.164.308(a)(1)(ii)(B), soc2.CC5.1]
approval_required contains {
	"rule": "irreversible-tool",
	"message": sprintf("Tool %s is irreversible and requires human approval", [tool]),
	"controls": [
		"eu_ai_act.art9", "eu_ai_act.art14(1)", "eu_ai_act.art14(4)(d)",
		"hipaa.164.308(a)(1)(ii)(B)", "soc2.CC5.1",
	],
} if {
	tool_spec.irreversible == true
}
