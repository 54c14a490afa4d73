package warden_test

import rego.v1

test_agent_over_its_own_limit_is_denied if {
	request := with_context(call("support-bot", "ticket_read", {}), {"counters": {"agent": {"calls_per_minute": 60}}})
	d := decide(request)
	d.effect == "deny"
	some r in d.reasons
	r.rule == "rate-limit-exceeded"
	r.message == "Rate limit calls_per_minute of agent support-bot reached: 60 of 60"
}

test_agent_under_its_limit_is_allowed if {
	allowed(with_context(call("support-bot", "ticket_read", {}), {"counters": {"agent": {"calls_per_minute": 59, "calls_per_hour": 1999}}}))
}

test_registry_default_limit_applies if {
	request := with_context(call("support-bot", "ticket_read", {}), {"counters": {"agent": {"calls_per_hour": 2000}}})
	denied_by(request, "rate-limit-exceeded")
}

test_default_limit_applies_without_override if {
	# reader-bot has no override, so the default of 120 per minute applies.
	allowed(with_context(call("reader-bot", "ticket_read", {}), {"counters": {"agent": {"calls_per_minute": 100}}}))
}

test_tool_limit_is_enforced if {
	request := with_context(call("support-bot", "payment_create", {"amount": 1}), {"counters": {"tool": {"calls_per_hour": 10}}})
	denied_by(request, "rate-limit-exceeded")
}

test_tool_under_limit_is_not_rate_limited if {
	request := with_context(call("support-bot", "payment_create", {"amount": 1}), {"counters": {"tool": {"calls_per_hour": 9}}})
	d := decide(request)
	not "rate-limit-exceeded" in rules_of(d)
}

test_non_numeric_counter_is_malformed if {
	request := with_context(call("support-bot", "ticket_read", {}), {"counters": {"agent": {"calls_per_minute": "lots"}}})
	denied_by(request, "malformed-input")
}

test_counter_beyond_exact_numbers_is_malformed if {
	request := with_context(call("support-bot", "ticket_read", {}), {"counters": {"agent": {"calls_per_minute": 18446744073709551617}}})
	denied_by(request, "malformed-input")
}
