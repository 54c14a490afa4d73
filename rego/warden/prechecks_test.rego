# The shortcuts that keep a decision cheap (docs/rego-engine.md, "Where the VM spends a
# decision"): each must still let through to its rules every input that a rule refuses.
package warden_test

import rego.v1

card := "4111 1111 1111 1111"

aws_key := "AKIAIOSFODNN7EXAMPLE"

# -- the two argument pre-checks (sensitive_data.rego) ----------------------------------

test_a_card_alone_is_masked_without_the_secret_scan if {
	request := call("support-bot", "ticket_read", {"card": "4111-1111-1111-1111"})
	decide(request).obligations.mask == ["/action/args/card"]
	data.warden.args_may_hold_card with input as request with data.warden_registry as registry
	not data.warden.args_may_hold_secret with input as request with data.warden_registry as registry
}

test_a_secret_alone_is_refused_without_the_card_scan if {
	request := call("support-bot", "ticket_read", {"note": concat(" ", ["key", aws_key])})
	denied_by(request, "secret-in-args")
	not data.warden.args_may_hold_card with input as request with data.warden_registry as registry
}

test_a_secret_and_a_card_in_one_call_are_both_found if {
	d := decide(call("support-bot", "ticket_read", {"a": {"b": [aws_key]}, "c": card}))
	"secret-in-args" in rules_of(d)
	d.obligations.mask == ["/action/args/a/b/0", "/action/args/c"]
}

test_a_secret_key_beside_a_card_value_is_found if {
	d := decide(call("support-bot", "ticket_read", {"x": {aws_key: card}}))
	"secret-in-args" in rules_of(d)
	d.obligations.mask == [concat("/", ["/action/args/x", aws_key])]
}

test_a_card_deep_in_arrays_beside_a_secret_in_the_context_is_masked if {
	args := json.unmarshal(`{"l1": [[[[[[[["4111 1111 1111 1111"]]]]]]]]}`)
	d := decide(with_context(call("support-bot", "ticket_read", args), {"note": aws_key}))
	"secret-in-context" in rules_of(d)
	not "secret-in-args" in rules_of(d)
	d.obligations.mask == ["/action/args/l1/0/0/0/0/0/0/0/0"]
}

test_card_digits_that_are_not_ascii_digits_are_not_a_card if {
	# Fullwidth digits: neither engine's [0-9] nor the digit count takes them.
	d := decide(call("support-bot", "ticket_read", {"note": "４１１１ １１１１ １１１１ １１１１"}))
	d.obligations.mask == []
	d.allow
}

# -- the input contract's fast path (contract.rego) -------------------------------------

test_well_formed_input_takes_the_fast_path if {
	request := with_context(call("support-bot", "ticket_read", {"id": 1}), {"counters": {"agent": {"calls_per_minute": 3}}, "on_behalf_of": ["orchestrator"], "approval_token": "t"})
	data.warden.input_well_formed with input as request with data.warden_registry as registry
	count(data.warden.input_violations) == 0 with input as request with data.warden_registry as registry
}

hostile_inputs := [
	[{"agent": {"id": "support bot"}, "action": {"tool": "ticket_read"}}, "agent.id"],
	[{"agent": {"id": "support-bot"}, "action": {"tool": "tïcket"}}, "action.tool"],
	[{"agent": {"id": "support-bot", "scopes": ["read:tickets", 1]}, "action": {"tool": "ticket_read"}}, "agent.scopes"],
	[{"agent": {"id": "support-bot"}, "action": {"tool": "ticket_read", "args": []}}, "action.args"],
	[{"agent": {"id": "support-bot"}, "action": {"tool": "ticket_read"}, "context": "x"}, "context"],
	[{"agent": {"id": "support-bot"}, "action": {"tool": "ticket_read"}, "context": {"on_behalf_of": "orchestrator"}}, "context.on_behalf_of"],
	[{"agent": {"id": "support-bot"}, "action": {"tool": "ticket_read"}, "context": {"approval_token": 7}}, "context.approval_token"],
	[{"agent": {"id": "support-bot"}, "action": {"tool": "ticket_read"}, "context": {"counters": {"agent": {"calls_per_minute": 1.5}}}}, "context.counters.agent.calls_per_minute"],
	[{"agent": {"id": "support-bot"}, "action": {"tool": "ticket_read"}, "context": {"counters": {"agent": 3}}}, "context.counters.agent"],
	[{"agent": {"id": "support-bot"}, "action": {"tool": "ticket_read"}, "context": {"counters": []}}, "context.counters"],
	[{"agent": "support-bot", "action": {"tool": "ticket_read"}}, "agent"],
]

test_every_hostile_shape_leaves_the_fast_path_and_names_its_field if {
	every hostile in hostile_inputs {
		[request, field] := hostile
		not data.warden.input_well_formed with input as request with data.warden_registry as registry
		some [named, _] in data.warden.input_violations with input as request with data.warden_registry as registry
		named == field
	}
}

# -- argument checks reached per tool category (contract.rego, args_schema.rego) --------

test_each_category_still_checks_its_arguments if {
	denied_by(call("support-bot", "file_write", {"path": ["/tmp/a"]}), "malformed-args")
	denied_by(call("support-bot", "http_request", {"url": 7}), "malformed-args")
	denied_by(call("support-bot", "email_send", {"to": "a@example.com", "headers": "Bcc: x@evil.test"}), "malformed-args")
	denied_by(call("support-bot", "git_push", {"branch": "main..x"}), "malformed-args")
	denied_by(call("support-bot", "shell", {"command": "ls", "cmd": "rm -rf /"}), "malformed-args")
	denied_by(call("support-bot", "ticket_update", {"id": "7"}), "malformed-args")
}

test_another_category_arguments_are_not_judged if {
	# "url" of a file tool is no URL to judge, and a ticket tool without a schema has none.
	allowed(call("support-bot", "file_write", {"path": "/tmp/a", "url": 7}))
	allowed(call("support-bot", "ticket_read", {"id": "7", "extra": [1]}))
}

# -- strings judged once (contract.rego, files.rego, egress.rego) -----------------------

test_an_empty_or_control_character_path_is_refused if {
	denied_by(call("support-bot", "file_write", {"path": ""}), "path-not-canonical")
	d := decide(call("support-bot", "file_write", {"path": "/tmp/a\tb"}))
	"malformed-args" in rules_of(d)
	"path-not-canonical" in rules_of(d)
}

test_a_path_with_spaces_is_canonical if {
	allowed(call("support-bot", "file_write", {"path": "/tmp/a b"}))
}

test_one_url_under_two_names_is_judged_under_each if {
	d := decide(call("support-bot", "http_request", {"url": "http://2130706433/", "href": "http://2130706433/"}))
	[r.message | some r in d.reasons; r.rule == "ambiguous-url"] == [
		"URL in args.href has an IPv4 address not written as four decimal octets; write the host plainly",
		"URL in args.url has an IPv4 address not written as four decimal octets; write the host plainly",
	]
}

test_url_shapes_caught_without_a_regex_still_are if {
	denied_by(call("support-bot", "http_request", {"url": "https://a%40b.example.com/"}), "ambiguous-url")
	denied_by(call("support-bot", "http_request", {"url": "https://x@api.example.com/"}), "ambiguous-url")
	denied_by(call("support-bot", "http_request", {"url": "https://.example.com/"}), "ambiguous-url")
	denied_by(call("support-bot", "http_request", {"url": "https://api..example.com/"}), "ambiguous-url")
	denied_by(call("support-bot", "http_request", {"url": "https://api.example.com./"}), "ambiguous-url")
	denied_by(call("support-bot", "http_request", {"url": "https://0x7f.0.0.1/"}), "ambiguous-url")
	denied_by(call("support-bot", "http_request", {"url": "https://api.example.com /"}), "ambiguous-url")
	allowed(call("support-bot", "http_request", {"url": "https://api.example.com/x"}))
	allowed(call("support-bot", "http_request", {"url": "https://1a.example.com/x"}))
}

# -- the gated deny groups (delegation.rego, egress.rego, shell.rego) ---------------------
# Each group is entered only for its class of input; a hostile shape must still be refused,
# by the group's rules or by the contract, never allowed because a gate stayed closed.

test_delegation_of_any_value_opens_the_delegation_group if {
	every facts in [null, false, 0, "", [], {}, ["orchestrator"], {"verified": "true"}, {"verified": true}] {
		request := object.union(call("support-bot", "ticket_read", {}), {"delegation": facts})
		data.warden.has_delegation with input as request with data.warden_registry as registry
		denied_by(request, "delegation-unverified")
	}
}

test_a_raw_chain_of_any_value_is_refused_outside_the_gate if {
	every chain in [null, false, "", [], {}, {"verified": true}] {
		denied_by(with_context(call("support-bot", "ticket_read", {}), {"delegation": chain}), "delegation-unverified")
	}
}

test_a_delegation_key_in_another_case_or_place_is_not_a_delegation_and_does_not_allow_more if {
	# Only input.delegation is a delegation: "Delegation" is an unknown top-level member,
	# the call is judged on the agent's own scopes (shell is allowed for it, ls only).
	request := object.union(call("support-bot", "shell", {"command": "rm -rf /"}), {"Delegation": {"verified": true}})
	not data.warden.has_delegation with input as request with data.warden_registry as registry
	denied_by(request, "shell-not-allowlisted")
}

test_egress_group_is_entered_for_network_tools_only if {
	request := call("support-bot", "http_request", {"url": "https://attacker.net/x"})
	denied_by(request, "egress-not-allowlisted")
	count(data.warden.egress_deny) == 0 with input as call("support-bot", "ticket_read", {"url": "https://attacker.net/x"}) with data.warden_registry as registry
}

test_network_tool_with_hostile_url_shapes_is_refused if {
	every args in [{}, {"url": null}, {"url": ["https://a.example.com/"]}, {"url": {"href": "https://a.example.com/"}}, {"urls": "https://a.example.com/"}, {"urls": [1]}, {"URL": "https://a.example.com/"}, {"ｕｒｌ": "https://a.example.com/"}, {"url": "https://a.example.com\\@attacker.net/"}] {
		d := decide(call("support-bot", "http_request", args))
		d.effect == "deny"
		count({"egress-url-invalid", "malformed-args", "ambiguous-url"} & rules_of(d)) > 0
	}
}

test_shell_group_is_entered_for_shell_tools_only if {
	denied_by(call("support-bot", "shell", {"command": "cat /etc/passwd"}), "shell-not-allowlisted")
	denied_by(call("support-bot", "shell", {"command": "ls; rm -rf /"}), "shell-metacharacters")
	count(data.warden.shell_deny) == 0 with input as call("support-bot", "ticket_read", {"command": "rm -rf /"}) with data.warden_registry as registry
}

test_shell_tool_with_hostile_command_shapes_is_refused if {
	every args in [{}, {"command": null}, {"command": ["ls"]}, {"command": {"ls": true}}, {"command": 1}, {"cmd": "ls"}, {"Command": "ls"}, {"ｃｏｍｍａｎｄ": "ls"}] {
		d := decide(call("support-bot", "shell", args))
		d.effect == "deny"
		"shell-not-allowlisted" in rules_of(d)
	}
}

test_a_tool_name_in_another_case_or_form_is_never_a_closed_gate_that_allows if {
	every tool in ["Shell", "SHELL", "shell ", "ｓｈｅｌｌ", "Http_Request", "http_request\u0000"] {
		d := decide(call("support-bot", tool, {"command": "rm -rf /", "url": "https://attacker.net/"}))
		d.effect == "deny"
		count({"unknown-tool", "malformed-input"} & rules_of(d)) > 0
	}
}

test_a_tool_field_of_another_type_is_refused if {
	every tool in [null, 1, ["shell"], {"name": "shell"}] {
		request := object.union(call("support-bot", "shell", {"command": "rm -rf /"}), {"action": {"tool": tool}})
		denied_by(request, "malformed-input")
	}
}

# -- the secret literal pre-check (sensitive_data.rego) ---------------------------------

test_plain_input_skips_the_secret_regex if {
	request := call("support-bot", "ticket_read", {"id": 7, "note": "see ticket 42, due 2026-01-01T00:00:00Z"})
	not data.warden.secret_literal_present with input as request with data.warden_registry as registry
	allowed(request)
}

test_every_kind_of_secret_passes_the_literal_pre_check if {
	github := concat("", ["ghp_", "abcdefghijklmnopqrstuvwxyz0123456789"])
	slack := "xoxb-1234567890-abcdef"
	stripe := concat("", ["sk_live_", "abcdefghijklmnop1234"])
	google := concat("", ["AIza", "SyA-abcdefghijklmnopqrstuvwxyz01234"])
	pem := "-----BEGIN RSA PRIVATE KEY-----"
	encoded := base64.encode(concat(" ", ["token", github]))
	every secret in [aws_key, "ASIAIOSFODNN7EXAMPLE", github, slack, stripe, google, pem, encoded, base64url.encode_no_pad(slack)] {
		request := call("support-bot", "ticket_read", {"note": secret})
		data.warden.secret_literal_present with input as request with data.warden_registry as registry
		denied_by(request, "secret-in-args")
		denied_by(with_context(call("support-bot", "ticket_read", {}), {"note": secret}), "secret-in-context")
	}
}

# -- the card pre-check counts ASCII digits of the arguments' JSON text -------------------

may_hold_card(args) if {
	data.warden.args_may_hold_card with input as call("support-bot", "ticket_read", args) with data.warden_registry as registry
}

test_card_precheck_counts_digits_across_arguments_and_only_ascii_digits if {
	may_hold_card({"a": "1234567", "b": 123456}) # 13 digits over a string and a number
	not may_hold_card({"a": "123456", "b": 123456}) # 12
	not may_hold_card({"a": "١٢٣٤٥٦٧٨٩٠١٢٣٤", "b": "１２３４５６７８９０１２３"}) # Arabic-Indic, fullwidth
	not may_hold_card({"long text without digits": "abcdefghijklmnopqrstuvwxyz"})
}

# Go's encoder writes <, >, & as \u003c, \u003e, \u0026 (regorus as they are): their digits
# are never counted, so both engines agree; other escapes count as they always did.
test_card_precheck_drops_the_escapes_only_go_writes if {
	not may_hold_card({"a": "<<<<>>>>&&&&", "b": "123456789012"})
	may_hold_card({"a": "<\u0001", "b": "123456789"}) # \u0001: its digits 0001 count
	not may_hold_card({"a": "\u0001", "b": "12345678"})
}
