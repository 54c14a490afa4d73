# What the agent may use: each registered tool names the scopes it requires, and the
# agent must hold all of them in the registry. Scopes the agent reports in its input
# can narrow the registry's grant for a session, never widen it.
package warden

import rego.v1

# The tool's required scopes that the agent's effective scopes (registry scopes, narrowed
# by input scopes when the input lists them) lack: those the registry does not grant, and
# those the input's list leaves out. Tools name few scopes, so each one is looked up in the
# agent's lists instead of building sets of all of them, in the rule body rather than in a
# function (the compiled VM pays ~7 k instructions per function call).
missing_scopes contains scope if {
	some scope in object.get(tool_spec, "scopes", [])
	not scope in registry_scopes
}

missing_scopes contains scope if {
	input_lists_scopes
	some scope in object.get(tool_spec, "scopes", [])
	not scope in input.agent.scopes
}

# Defined for an unknown agent too (no scopes), so that the `not` above never meets an
# undefined value (OPA and regorus treat that differently).
default registry_scopes := []

registry_scopes := object.get(agent, "scopes", [])

# A helper rule, not `not is_array(input.agent.scopes)`: OPA hoists a reference out of
# `not`, so that expression is undefined (not true) when input.agent.scopes is absent
# (open-policy-agent/opa#1877), while regorus makes it true.
input_lists_scopes if is_array(input.agent.scopes)

# METADATA
# title: Tools must be registered
# description: An unregistered tool has no known scopes or risks, so it is denied.
# custom:
#   severity: high
#   controls: [eu_ai_act.art26(1), hipaa.164.312(a)(1), soc2.CC6.1]
deny contains {
	"rule": "unknown-tool",
	"message": sprintf("Tool %s is not registered", [tool]),
	"controls": ["eu_ai_act.art26(1)", "hipaa.164.312(a)(1)", "soc2.CC6.1"],
} if {
	tool
	not registry.tools[tool]
}

# METADATA
# title: The agent must hold every scope the tool requires
# custom:
#   severity: high
#   controls: [eu_ai_act.art26(1), hipaa.164.308(a)(4)(ii)(B), hipaa.164.312(a)(1), hipaa.164.502(b), soc2.CC6.1, soc2.CC6.3]
deny contains {
	"rule": "missing-scope",
	"message": sprintf("Tool %s requires scope %s, which agent %s does not hold", [tool, scope, agent_id]),
	"controls": [
		"eu_ai_act.art26(1)", "hipaa.164.308(a)(4)(ii)(B)", "hipaa.164.312(a)(1)",
		"hipaa.164.502(b)", "soc2.CC6.1", "soc2.CC6.3",
	],
} if {
	agent
	some scope in missing_scopes
}
