package warden_test

import rego.v1

# Numbers reach decisions the same in every engine: OPA holds input numbers exactly
# (2^64 + 1, 10^30), regorus as 64-bit floats beyond 2^63 (and writes them out in full or
# with another exponent), so messages show only whole numbers within ±2^53 and the type of
# anything else, and comparisons that decide refuse numbers beyond ±2^53.

test_shown_writes_exact_whole_numbers_and_the_type_of_the_rest if {
	data.warden.shown("x 1") == "x 1"
	data.warden.shown(60) == "60"
	data.warden.shown(-5) == "-5"
	data.warden.shown(-0.0) == "0"
	data.warden.shown(100.0) == "100"
	data.warden.shown(9007199254740992) == "9007199254740992"
	data.warden.shown(-9007199254740992) == "-9007199254740992"
	every big in [9007199254740993, 18446744073709551617, 1e30, 1e308, -1e308, 1.5, 1e-7, 0.1] {
		data.warden.shown(big) == "(number)"
	}
	data.warden.shown([1]) == "(array)"
	data.warden.shown({"a": 1}) == "(object)"
	data.warden.shown(null) == "(null)"
}

test_rate_limit_message_with_a_huge_counter_is_engine_independent if {
	every used in [18446744073709551617, 1e308, 1000000000000000000000000000000] {
		request := with_context(call("support-bot", "ticket_read", {}), {"counters": {"agent": {"calls_per_minute": used}}})
		d := decide(request)
		some r in d.reasons
		r.rule == "rate-limit-exceeded"
		r.message == "Rate limit calls_per_minute of agent support-bot reached: (number) of 60"
	}
}

test_shell_message_with_a_numeric_agent_id_is_engine_independent if {
	d := decide(object.union(call("support-bot", "shell", {"command": "rm"}), {"agent": {"id": 18446744073709551617}}))
	some r in d.reasons
	r.rule == "shell-not-allowlisted"
	r.message == `Shell command "rm" is not on the allowlist of agent (number)`
}

# regorus reads both as 2^64 (equal), OPA exactly (over the ceiling): refused in both.
test_amount_beyond_2_53_is_over_any_ceiling if {
	facts := object.union(verified_delegation, {"constraints": {"max_amount": 18446744073709551616}})
	denied_by(delegated("payment_create", {"amount": 18446744073709551617, "currency": "EUR"}, facts), "delegation-amount")
	denied_by(delegated("payment_create", {"amount": 5, "currency": "EUR"}, facts), "delegation-amount")
	ok := object.union(verified_delegation, {"constraints": {"max_amount": 9007199254740992}})
	not "delegation-amount" in rules_of(decide(delegated("payment_create", {"amount": 9007199254740992, "currency": "EUR"}, ok)))
}

# Deep arguments are refused for digits in their strings, not for a number's digits (OPA
# writes 10^30 with 31 digits, regorus as 1e+30).
test_deep_arguments_with_a_long_number_and_plain_text_are_not_refused if {
	# Built from text: directly nested brackets in a literal take regorus exponential time to parse.
	deep := json.unmarshal(`[[[[[[[[[[[[[[[[[["plain text"]]]]]]]]]]]]]]]]]]`)
	d := decide(call("support-bot", "ticket_read", {"n": 1000000000000000000000000000000, "deep": deep}))
	not "args-too-deep" in rules_of(d)
	card := json.unmarshal(`[[[[[[[[[[[[[[[[[["4111 1111 1111 1111"]]]]]]]]]]]]]]]]]]`)
	denied_by(call("support-bot", "ticket_read", {"deep": card}), "args-too-deep")
}
