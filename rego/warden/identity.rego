# Who is acting: the input must name a registered, active agent, and every agent
# it acts on behalf of must be active too (the kill switch reaches delegations).
package warden

import rego.v1

# METADATA
# title: Unknown agents are denied
# custom:
#   severity: critical
#   controls: [hipaa.164.312(a)(2)(i), hipaa.164.312(d), soc2.CC6.1, soc2.CC6.2]
deny contains {
	"rule": "unknown-agent",
	"message": sprintf("Agent %s is not registered", [agent_id]),
	"controls": ["hipaa.164.312(a)(2)(i)", "hipaa.164.312(d)", "soc2.CC6.1", "soc2.CC6.2"],
} if {
	agent_id
	not registry.agents[agent_id]
}

# METADATA
# title: Suspended or revoked agents are denied (kill switch)
# custom:
#   severity: critical
#   controls: [eu_ai_act.art14(1), eu_ai_act.art14(4)(e), eu_ai_act.art26(5), hipaa.164.308(a)(3)(ii)(C), soc2.CC6.2, soc2.CC7.4]
deny contains {
	"rule": "agent-not-active",
	"message": sprintf("Agent %s is %s", [agent_id, status]),
	"controls": [
		"eu_ai_act.art14(1)", "eu_ai_act.art14(4)(e)", "eu_ai_act.art26(5)",
		"hipaa.164.308(a)(3)(ii)(C)", "soc2.CC6.2", "soc2.CC7.4",
	],
} if {
	status := object.get(agent, "status", "without a status")
	status != "active"
}

# METADATA
# title: Acting on behalf of a suspended, revoked or unknown agent is denied
# custom:
#   severity: critical
#   controls: [eu_ai_act.art14(4)(e), eu_ai_act.art26(5), hipaa.164.308(a)(3)(ii)(C), soc2.CC6.2, soc2.CC7.4]
deny contains {
	"rule": "delegator-not-active",
	"message": sprintf("Agent %s, on whose behalf this agent acts, is not active", [shown(delegator)]),
	"controls": [
		"eu_ai_act.art14(4)(e)", "eu_ai_act.art26(5)",
		"hipaa.164.308(a)(3)(ii)(C)", "soc2.CC6.2", "soc2.CC7.4",
	],
} if {
	some delegator in delegators
	not delegator_active(delegator)
}

# Delegators as the input lists them; any other shape is refused by the input contract.
delegators := value if {
	value := object.get(context, "on_behalf_of", [])
	is_array(value)
} else := []

delegator_active(delegator) if registry.agents[delegator].status == "active"
