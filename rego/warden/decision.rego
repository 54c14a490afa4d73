# Warden's decision entry point: data.warden.decision.
#
# Every rule file in this package adds to one of three partial sets:
#   deny               reasons that refuse the action outright
#   approval_required  reasons that hold the action for a person's approval
#   mask               JSON pointers (into the input) the audit log must mask
# and the helpers below combine them. Precedence: deny > require_approval > allow,
# and the answer is deny unless the allow rule holds (fail closed).
package warden

import rego.v1

# Registry facts (agents, tools, protected resources) travel as bundle data.
default registry := {}

registry := data.warden_registry

agent_id := input.agent.id if is_string(input.agent.id)

agent := registry.agents[agent_id]

tool := input.action.tool if is_string(input.action.tool)

tool_spec := registry.tools[tool]

args := input.action.args if is_object(input.action.args)

default context := {}

context := input.context if is_object(input.context)

# METADATA
# title: Active, registered agent calling a registered tool within its scopes
# description: The only rule that allows; every other rule can only take away.
# custom:
#   severity: info
#   controls: [eu_ai_act.art26(1), hipaa.164.312(a)(1), soc2.CC6.1, soc2.CC6.3]
allowed if {
	agent.status == "active"
	tool_spec
	count(missing_scopes) == 0
}

# METADATA
# title: Nothing allowed the action (fail closed)
# custom:
#   severity: high
#   controls: [eu_ai_act.art15(4), soc2.CC5.1]
default_deny := {
	"rule": "default-deny",
	"message": "No policy rule allows this action",
	"controls": ["eu_ai_act.art15(4)", "soc2.CC5.1"],
}

# An approval is looked up only when something needs one.
pending_approval := approval_required if {
	count(approval_required) > 0
	not approval_granted
} else := set()

effect := "deny" if {
	count(deny) > 0
} else := "require_approval" if {
	count(pending_approval) > 0
} else := "allow" if {
	allowed
} else := "deny"

reasons := sort_reasons(deny | pending_approval) if {
	count(deny | pending_approval) > 0
} else := [default_deny] if {
	effect == "deny"
} else := []

sort_reasons(rs) := [r | some id in sort({r.rule | some r in rs}); some r in rs; r.rule == id]

decision := {
	"allow": effect == "allow",
	"effect": effect,
	"reasons": reasons,
	"obligations": {"log": true, "mask": sort(mask)},
}
