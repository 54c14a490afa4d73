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

# The input as an object ({} when it is not one), so that object.get never meets another
# type: a builtin error would silently drop the rule it sits in (see contract.rego).
default request := {}

request := input if is_object(input)

agent_id := id if {
	id := object.get(request, ["agent", "id"], null)
	is_string(id)
}

agent := registry.agents[agent_id]

tool := name if {
	name := object.get(request, ["action", "tool"], null)
	is_string(name)
}

tool_spec := registry.tools[tool]

# Arguments that are absent are no arguments; arguments of another type are refused by
# the input contract (malformed-input), so rules may treat args as an object.
default args := {}

args := value if {
	value := object.get(request, ["action", "args"], {})
	is_object(value)
}

default context := {}

context := value if {
	value := object.get(request, "context", {})
	is_object(value)
}

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

enforced_decision := {
	"allow": effect == "allow",
	"effect": effect,
	"reasons": reasons,
	"obligations": {"log": true, "mask": sort(mask)},
}

# With log-only organisation rules, the decision also carries what they would have decided
# under "log_only"; enforcement points read only allow/effect, so a stock OPA sidecar
# enforces the same and its decision log records the would-be effect.
decision := object.union(enforced_decision, {"log_only": log_only_decision}) if {
	count(log_only_policies) > 0
} else := enforced_decision

# Organisation policy lives in packages warden.org.<name> (the control plane refuses any
# other package for it) and can only add: reasons to deny, reasons to hold for approval,
# and JSON pointers to mask. It cannot allow, nor override a library rule.
org_policies[name] := policy if {
	some name, policy in data.warden.org
	is_object(policy)
	not log_only_policy(policy)
}

# A module that declares `log_only := true` is evaluated but not enforced (docs/authoring.md).
log_only_policy(policy) if policy.log_only == true

log_only_policies[name] := policy if {
	some name, policy in data.warden.org
	is_object(policy)
	log_only_policy(policy)
}

log_only_deny contains org_reason(reason) if {
	some policy in log_only_policies
	is_set(policy.deny)
	some reason in policy.deny
}

log_only_approval_required contains org_reason(reason) if {
	some policy in log_only_policies
	is_set(policy.approval_required)
	some reason in policy.approval_required
}

# The effect had the log-only rules been enforced, and the reasons they would have added.
log_only_effect := "deny" if {
	count(deny | log_only_deny) > 0
} else := "require_approval" if {
	count(approval_required | log_only_approval_required) > 0
	not approval_granted
} else := effect

log_only_decision := {
	"allow": log_only_effect == "allow",
	"effect": log_only_effect,
	"reasons": sort_reasons(log_only_deny | log_only_approval_required),
}

deny contains org_reason(reason) if {
	some policy in org_policies
	is_set(policy.deny)
	some reason in policy.deny
}

approval_required contains org_reason(reason) if {
	some policy in org_policies
	is_set(policy.approval_required)
	some reason in policy.approval_required
}

mask contains pointer if {
	some policy in org_policies
	is_set(policy.mask)
	some pointer in policy.mask
	is_string(pointer)
}

# An organisation reason as the decision contract has it; a reason of another shape is
# kept (it still denies or holds) under a rule id that says so.
org_reason(reason) := {"rule": reason.rule, "message": reason.message, "controls": object.get(reason, "controls", [])} if {
	is_object(reason)
	is_string(reason.rule)
	is_string(reason.message)
} else := {"rule": "org-policy-malformed-reason", "message": sprintf("Organisation policy gave a reason that is not {rule, message}: %s", [shown(reason)]), "controls": []}
