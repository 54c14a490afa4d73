# Rate limits from counters the enforcement point passes in context.counters:
#   {"agent": {"calls_per_minute": 12}, "tool": {"calls_per_hour": 3}}
# Each counter is the number of calls already made in its window. Limits come from
# the registry: defaults in rate_limits, overridden per agent; per-tool limits on the tool.
package warden

import rego.v1

agent_rate_limits := object.union(
	object.get(registry, "rate_limits", {}),
	object.get(agent, "rate_limits", {}),
)

# Driven by the counters the input carries (usually none or one), so the limits are only
# looked up for counters that are there.
rate_limit_hits contains [sprintf("agent %s", [agent_id]), name, used, limit] if {
	is_object(context.counters.agent)
	some name, used in context.counters.agent
	is_number(used)
	limit := agent_rate_limits[name]
	used >= limit
}

rate_limit_hits contains [sprintf("tool %s", [tool]), name, used, limit] if {
	is_object(context.counters.tool)
	some name, used in context.counters.tool
	is_number(used)
	limit := object.get(tool_spec, "rate_limits", {})[name]
	used >= limit
}

# METADATA
# title: Calls beyond the agent's or tool's rate limit are denied
# custom:
#   severity: medium
#   controls: [eu_ai_act.art9, eu_ai_act.art15(4), soc2.CC7.2]
deny contains {
	"rule": "rate-limit-exceeded",
	"message": sprintf("Rate limit %s of %s reached: %s of %s", [name, subject, shown(used), shown(limit)]),
	"controls": ["eu_ai_act.art9", "eu_ai_act.art15(4)", "soc2.CC7.2"],
} if {
	some [subject, name, used, limit] in rate_limit_hits
}
