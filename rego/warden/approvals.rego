# Irreversible actions wait for a person: payments, e-mail that leaves the company,
# pushes to protected branches, and tools the registry marks irreversible.
#
# A person's approval reaches the engines as bundle data (registry.approvals, keyed by
# grant id, the approval token). It grants exactly one action: the same agent, environment,
# tool and arguments, until it expires, once. A grant whose consumption the control plane has
# recorded leaves the bundle (its id stays in registry.approvals_consumed until it expires).
# The token is a reference, not a secret; the binding is the control (docs/approvals.md).
package warden

import rego.v1

action_args := object.get(object.get(request, "action", {}), "args", {}) if is_object(object.get(request, "action", {}))

approval_token := token if {
	token := object.get(context, "approval_token", null)
	is_string(token)
}

approval_grants := grants if {
	grants := object.get(registry, "approvals", {})
	is_object(grants)
} else := {}

# The grant the input presents, found by iterating (never by indexing with a value that may
# be undefined: regorus and OPA then differ, see contract.rego).
presented_grants contains grant if {
	token := approval_token
	some id, grant in approval_grants
	id == token
	is_object(grant)
}

approval_consumed if {
	token := approval_token
	consumed := object.get(registry, "approvals_consumed", [])
	is_array(consumed)
	some used in consumed
	used == token
}

# Which bindings of the presented grant fail for this action (empty: the grant holds).
approval_binding_failures contains "consumed" if approval_consumed

approval_binding_failures contains "unknown" if {
	approval_token
	not approval_consumed
	count(presented_grants) == 0
}

approval_binding_failures contains "agent" if {
	some grant in presented_grants
	object.get(grant, "agent_id", null) != object.get(request, ["agent", "id"], null)
}

# The bundle's own environment is authoritative; the input's, when given, must agree.
approval_binding_failures contains "env" if {
	some grant in presented_grants
	object.get(grant, "environment", null) != object.get(registry, "environment", null)
}

approval_binding_failures contains "env" if {
	some grant in presented_grants
	given := object.get(context, "environment", null)
	given != null
	given != object.get(grant, "environment", null)
}

approval_binding_failures contains "tool" if {
	some grant in presented_grants
	object.get(grant, "tool", null) != object.get(request, ["action", "tool"], null)
}

approval_binding_failures contains "args" if {
	some grant in presented_grants
	object.get(grant, "args", null) != action_args
}

approval_binding_failures contains "expiry" if {
	some grant in presented_grants
	expires := object.get(grant, "expires_at_ns", 0)
	not time.now_ns() < expires
}

approval_granted if {
	count(presented_grants) == 1
	count(approval_binding_failures) == 0
}

# METADATA
# title: An approval grant is honoured only for the one action it binds
# custom:
#   severity: critical
#   controls: [eu_ai_act.art14(4)(d), soc2.CC5.1, soc2.CC6.1]
deny contains {
	"rule": "approval-grant-rejected",
	"message": sprintf("Approval grant %s does not bind this action: %s", [approval_token, concat(", ", sort(approval_binding_failures))]),
	"controls": ["eu_ai_act.art14(4)(d)", "soc2.CC5.1", "soc2.CC6.1"],
} if {
	approval_token
	count(approval_required) > 0
	count(approval_binding_failures) > 0
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

# [argument name, value] for each recipient string: a field holds one string (an address
# or a comma-separated list of them) or an array of strings (contract.rego).
recipient_values contains [name, value] if {
	judged_category == "email"
	some name, value in args # not args[name]: regorus binds an absent member and goes on
	name in recipient_argument_names
	is_string(value)
}

recipient_values contains [sprintf("%s/%d", [name, i]), value] if {
	judged_category == "email"
	some name, values in args
	name in recipient_argument_names
	is_array(values) # `some .. in` a string is an error in regorus, undefined in OPA
	some i, value in values
	is_string(value)
}

# RFC 5322 address lists, as far as a rule must read them: comma- or semicolon-separated
# mailboxes, each a bare address or "Display Name <address>". Quoted strings, comments and
# groups (which may hide further recipients) are refused below rather than parsed.
bare_address_pattern := `^[A-Za-z0-9.!#$%&'*+/=?^_{|}~-]+@[A-Za-z0-9.-]+$`

named_address_pattern := `^[^<>"(),;:@\\]*<([A-Za-z0-9.!#$%&'*+/=?^_{|}~-]+@[A-Za-z0-9.-]+)>$`

mailboxes contains [name, trim_space(part)] if {
	some [name, value] in recipient_values
	printable_recipients(value)
	some part in regex.split(`[,;]`, value)
	trim_space(part) != ""
}

printable_recipients(value) if printable_text(value)

mailbox_address(mailbox) := mailbox if regex.match(bare_address_pattern, mailbox)

mailbox_address(mailbox) := match[1] if {
	not regex.match(bare_address_pattern, mailbox)
	some match in regex.find_all_string_submatch_n(named_address_pattern, mailbox, 1)
}

email_recipients contains lower(address) if {
	some [_, mailbox] in mailboxes
	address := mailbox_address(mailbox)
	is_string(address) # a later use: see agents_sdk/engine/vm_safety.py
}

default internal_email_domains := []

internal_email_domains := registry.internal_email_domains

internal_recipient(address) if {
	some domain in internal_email_domains
	is_string(domain)
	endswith(address, concat("", ["@", lower(domain)]))
}

email_args_violations contains [name, sprintf("e-mail addresses (%q is not one)", [mailbox])] if {
	some [name, mailbox] in mailboxes
	not mailbox_address(mailbox)
}

email_args_violations contains [name, "printable ASCII addresses (internationalised addresses need approval by hand)"] if {
	some [name, value] in recipient_values
	not printable_recipients(value)
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

# [argument name, ref] for each ref a push names, as a string or an array of strings.
ref_values contains [name, value] if {
	judged_category == "git_push"
	some name, value in args # not args[name]: regorus binds an absent member and goes on
	name in ref_argument_names
	is_string(value)
}

ref_values contains [sprintf("%s/%d", [name, i]), value] if {
	judged_category == "git_push"
	some name, values in args
	name in ref_argument_names
	is_array(values) # `some .. in` a string is an error in regorus, undefined in OPA
	some i, value in values
	is_string(value)
}

# The branch a refspec updates: "+src:dst" forces src onto dst, "HEAD:main" and ":main"
# (a deletion) update main, "refs/heads/x" is branch x.
pushed_ref(refspec) := trim_prefix(destination, "refs/heads/") if {
	spec := trim_prefix(refspec, "+")
	parts := split(spec, ":")
	destination := parts[count(parts) - 1]
	is_string(destination) # a later use: see agents_sdk/engine/vm_safety.py
}

pushed_refs contains pushed_ref(value) if {
	some [_, value] in ref_values
	valid_pushed_ref(value)
}

# git check-ref-format refuses these; glob characters would make patterns misfire.
git_args_violations contains [name, sprintf("a git ref naming a branch (%q is not one)", [value])] if {
	some [name, value] in ref_values
	not valid_pushed_ref(value)
}

valid_pushed_ref(refspec) if {
	printable_ascii(refspec)
	branch := pushed_ref(refspec)
	branch != ""
	upper(branch) != "HEAD"
	not regex.match(`[~^:?*\[\\{}]|\.\.|@\{|^/|/$|//|\.lock$|^-`, branch)
	count(split(trim_prefix(refspec, "+"), ":")) <= 2
}

# Branches compare without regard to ASCII case (refs live in case-insensitive file
# systems on some hosts); a pattern ending in "/*" covers nested names too.
protected_branch(branch) if {
	some pattern in protected_branches
	is_string(pattern)
	glob.match(lower(pattern), ["/"], lower(branch))
}

protected_branch(branch) if {
	some pattern in protected_branches
	is_string(pattern)
	endswith(pattern, "/*")
	startswith(lower(branch), lower(trim_suffix(pattern, "*")))
}

# METADATA
# title: Pushes to protected branches require human approval
# custom:
#   severity: high
#   controls: [eu_ai_act.art14(1), eu_ai_act.art14(4)(d), soc2.CC5.1, soc2.CC8.1]
approval_required contains {
	"rule": "protected-branch-push",
	"message": sprintf("Push to protected branch %s requires human approval", [branch]),
	"controls": ["eu_ai_act.art14(1)", "eu_ai_act.art14(4)(d)", "soc2.CC5.1", "soc2.CC8.1"],
} if {
	judged_category == "git_push" # pushed_refs holds refs of git_push tools only: not entered for others
	some branch in pushed_refs
	protected_branch(branch)
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

# METADATA
# title: An agent the anomaly detector holds needs approval for every action
# description: >-
#   The automatic response require_approval (controlplane/detection) lists the agent in
#   data.warden_registry.held_agents until a person closes the alert.
# custom:
#   severity: high
#   controls: [eu_ai_act.art14(4)(e), eu_ai_act.art73, soc2.CC7.4]
approval_required contains {
	"rule": "detector-hold",
	"message": sprintf("Agent %s is held by the anomaly detector (alert %s); a person must approve its actions until the alert is closed", [agent_id, shown(object.get(detector_hold, "alert", "unknown"))]),
	"controls": ["eu_ai_act.art14(4)(e)", "eu_ai_act.art73", "soc2.CC7.4"],
} if {
	detector_hold
}

# object.get, not registry.held_agents[agent_id]: regorus' VM mis-evaluated that reference
# when the registry has no held_agents (a hold on every call that presented a grant): an
# undefined `:=` that no later statement reads (agents_sdk/engine/vm_safety.py).
detector_hold := hold if {
	hold := object.get(object.get(registry, "held_agents", {}), agent_id, null)
	is_object(hold)
}
