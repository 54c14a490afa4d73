# Delegation (docs/delegation.md): an agent acting on another's instruction does at most
# what the verified chain of grants lets it. The enforcement point (Guard, warden sidecar)
# verifies the chain's signatures, audiences, attenuation, times and revocations against
# this bundle's registry and passes only the facts as input.delegation; the policy then
# keeps every agent of the chain active and the call inside the effective scopes, tools
# and argument constraints.
package warden

import rego.v1

# Not `_ := request.delegation`: regorus binds an absent member and goes on.
has_delegation if {
	some key, _ in request
	key == "delegation"
}

default delegation := {}

delegation := value if {
	value := request.delegation
	is_object(value)
	value.verified == true
	strings_array(value.agents)
	strings_array(value.scopes)
	is_object(value.constraints)
}

delegation_verified if delegation.verified == true

# A raw chain reaches the policy only when no verifier ran (a stock OPA): refuse, never ignore.
raw_chain_unverified if {
	some key, _ in context
	key == "delegation"
}

delegation_controls := ["eu_ai_act.art14(4)(e)", "eu_ai_act.art26(5)", "hipaa.164.312(a)(1)", "soc2.CC6.1", "soc2.CC6.3"]

# The rules below (delegation_deny) can hold only for an input with a delegation: each needs
# has_delegation, or delegation_verified or a member of delegation, which need it too. The
# compiled VM pays for every rule definition it enters, so a decision without one enters
# this definition alone (and the raw-chain rule's); each rule keeps its own conditions.
deny contains reason if {
	has_delegation
	some reason in delegation_deny
}

# METADATA
# title: A delegation the enforcement point did not verify is refused
# description: Only Warden's verifier writes input.delegation; anything else in its place is a raw claim.
# custom:
#   severity: critical
#   controls: [eu_ai_act.art14(4)(e), eu_ai_act.art26(5), hipaa.164.312(a)(1), soc2.CC6.1, soc2.CC6.3]
delegation_deny contains {
	"rule": "delegation-unverified",
	"message": "input.delegation is not a verified chain; send the chain as context.delegation to a verifying engine",
	"controls": delegation_controls,
} if {
	has_delegation
	not delegation_verified
}

# METADATA
# title: A delegation chain no enforcement point verified is refused
# description: context.delegation is removed by every verifying engine; reaching the policy, it was never checked.
# custom:
#   severity: critical
#   controls: [eu_ai_act.art14(4)(e), eu_ai_act.art26(5), hipaa.164.312(a)(1), soc2.CC6.1, soc2.CC6.3]
deny contains {
	"rule": "delegation-unverified",
	"message": "context.delegation reached the policy unverified; decide through the Guard or warden sidecar, which verify chains",
	"controls": delegation_controls,
} if {
	raw_chain_unverified
}

# METADATA
# title: Every agent of a delegation chain must be active (the kill switch reaches delegations)
# custom:
#   severity: critical
#   controls: [eu_ai_act.art14(4)(e), eu_ai_act.art26(5), hipaa.164.312(a)(1), soc2.CC6.1, soc2.CC6.3]
delegation_deny contains {
	"rule": "delegation-agent-not-active",
	"message": sprintf("Agent %s in the delegation chain is not active, so nothing it delegated may run", [member]),
	"controls": delegation_controls,
} if {
	some member in object.get(delegation, "agents", [])
	not delegator_active(member)
}

# METADATA
# title: The delegation must end at the acting agent
# custom:
#   severity: critical
#   controls: [eu_ai_act.art14(4)(e), eu_ai_act.art26(5), hipaa.164.312(a)(1), soc2.CC6.1, soc2.CC6.3]
delegation_deny contains {
	"rule": "delegation-audience",
	"message": sprintf("The delegation chain ends at %s, not at the acting agent %s", [shown(last), shown(agent_id)]),
	"controls": delegation_controls,
} if {
	delegation_verified
	members := delegation.agents
	last := members[count(members) - 1]
	last != agent_id
}

# METADATA
# title: A delegated call must stay within the scopes every link of the chain granted
# custom:
#   severity: high
#   controls: [eu_ai_act.art14(4)(e), eu_ai_act.art26(5), hipaa.164.312(a)(1), soc2.CC6.1, soc2.CC6.3]
delegation_deny contains {
	"rule": "delegation-scope",
	"message": sprintf("Tool %s requires scope %s, which the delegation from %s does not grant", [tool, scope, delegation.origin]),
	"controls": delegation_controls,
} if {
	delegation_verified
	some scope in object.get(tool_spec, "scopes", [])
	not scope in delegation.scopes
}

# METADATA
# title: A delegated call must use a tool the chain names, when it names tools
# custom:
#   severity: high
#   controls: [eu_ai_act.art14(4)(e), eu_ai_act.art26(5), hipaa.164.312(a)(1), soc2.CC6.1, soc2.CC6.3]
delegation_deny contains {
	"rule": "delegation-tool",
	"message": sprintf("Tool %s is not among the tools delegated by %s", [tool, delegation.origin]),
	"controls": delegation_controls,
} if {
	delegation_verified
	tools := object.get(delegation, "tools", null)
	tools != null
	not tool_delegated(tools)
}

tool_delegated(tools) if {
	is_array(tools)
	tool in tools
}

path_arguments := ["path", "file_path", "directory", "source", "destination"]

# METADATA
# title: A delegated call must keep to the delegated path prefix
# custom:
#   severity: high
#   controls: [eu_ai_act.art14(4)(e), eu_ai_act.art26(5), hipaa.164.312(a)(1), soc2.CC6.1, soc2.CC6.3]
delegation_deny contains {
	"rule": "delegation-path",
	"message": sprintf("Argument %s is outside %s, the path delegated to this agent", [name, shown(prefix)]),
	"controls": delegation_controls,
} if {
	some constraint, prefix in object.get(delegation, "constraints", {})
	constraint == "path_prefix"
	some name, value in args # not args[name]: regorus binds an absent member and goes on
	name in path_arguments
	not path_within(value, prefix)
}

path_within(path, prefix) if {
	is_string(path)
	is_string(prefix)
	startswith(path, prefix)
	not contains(path, "/../")
	not endswith(path, "/..")
	not contains(path, "/./")
}

# METADATA
# title: A delegated call must keep to the delegated amount ceiling
# custom:
#   severity: high
#   controls: [eu_ai_act.art14(4)(e), eu_ai_act.art26(5), hipaa.164.312(a)(1), soc2.CC6.1, soc2.CC6.3]
delegation_deny contains {
	"rule": "delegation-amount",
	"message": sprintf("Argument amount must be a number of at most %s under this delegation", [shown(ceiling)]),
	"controls": delegation_controls,
} if {
	some constraint, ceiling in object.get(delegation, "constraints", {})
	constraint == "max_amount"
	some name, value in args
	name == "amount"
	not amount_within(value, ceiling)
}

# Both exact (within ±2^53): beyond it regorus holds 2^64 + 1 as 2^64 and OPA does not, so
# the comparison, and the decision, would depend on the engine.
amount_within(value, ceiling) if {
	is_number(value)
	is_number(ceiling)
	abs(value) <= max_number
	abs(ceiling) <= max_number
	value <= ceiling
}

recipient_arguments := ["to", "recipient", "email", "cc", "bcc"]

# METADATA
# title: A delegated call may address only the delegated recipient domain
# custom:
#   severity: high
#   controls: [eu_ai_act.art14(4)(e), eu_ai_act.art26(5), hipaa.164.312(a)(1), soc2.CC6.1, soc2.CC6.3]
delegation_deny contains {
	"rule": "delegation-recipient",
	"message": sprintf("Argument %s names a recipient outside %s, the domain delegated to this agent", [name, shown(domain)]),
	"controls": delegation_controls,
} if {
	some constraint, domain in object.get(delegation, "constraints", {})
	constraint == "recipient_domain"
	some name, value in args
	name in recipient_arguments
	some address in as_array(value)
	not recipient_within(address, domain)
}

as_array(value) := value if is_array(value)

else := [value]

recipient_within(address, domain) if {
	is_string(address)
	is_string(domain)
	endswith(address, concat("", ["@", domain]))
	count(split(address, "@")) == 2
}
