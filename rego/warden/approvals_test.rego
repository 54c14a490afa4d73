package warden_test

import rego.v1

test_payment_requires_approval if {
	needs_approval_by(call("support-bot", "payment_create", {"amount": 1200, "currency": "EUR"}), "payment-requires-approval")
}

test_non_payment_tool_needs_no_payment_approval if {
	d := decide(call("support-bot", "ticket_read", {"amount": 1200}))
	not "payment-requires-approval" in rules_of(d)
	d.allow
}

test_email_to_customer_requires_approval if {
	d := decide(call("support-bot", "email_send", {"to": ["bob@customer.org"], "subject": "Refund"}))
	d.effect == "require_approval"
	some r in d.reasons
	r.rule == "external-email-requires-approval"
	r.message == "E-mail to bob@customer.org requires human approval"
}

test_email_with_one_external_cc_requires_approval if {
	needs_approval_by(call("support-bot", "email_send", {"to": "ops@example.com", "cc": ["x@gmail.com"]}), "external-email-requires-approval")
}

test_internal_email_is_allowed if {
	allowed(call("support-bot", "email_send", {"to": ["Ops@Example.com"], "cc": "dev@example.com"}))
}

test_lookalike_internal_domain_requires_approval if {
	needs_approval_by(call("support-bot", "email_send", {"to": "ceo@notexample.com"}), "external-email-requires-approval")
}

test_push_to_main_requires_approval if {
	needs_approval_by(call("support-bot", "git_push", {"repo": "warden", "branch": "main"}), "protected-branch-push")
}

test_push_to_release_branch_requires_approval if {
	needs_approval_by(call("support-bot", "git_push", {"repo": "warden", "branch": "release/1.4"}), "protected-branch-push")
}

test_push_to_feature_branch_is_allowed if {
	allowed(call("support-bot", "git_push", {"repo": "warden", "branch": "feature/release/x"}))
}

test_irreversible_tool_requires_approval if {
	needs_approval_by(call("support-bot", "db_drop_table", {"table": "orders"}), "irreversible-tool")
}

test_reversible_tool_needs_no_approval if {
	d := decide(call("support-bot", "file_write", {"path": "/tmp/x"}))
	not "irreversible-tool" in rules_of(d)
	d.allow
}

test_approval_waives_every_approval_reason if {
	reg := object.union(registry, {"approvals": {"apr-pay": {
		"agent_id": "support-bot", "environment": "prod", "tool": "payment_create", "args": {"amount": 5},
		"expires_at_ns": 4102444800000000000,
	}}})
	request := with_context(call("support-bot", "payment_create", {"amount": 5}), {"approval_token": "apr-pay"})
	d := data.warden.decision with input as request with data.warden_registry as reg
	d.effect == "allow"
}

test_approval_never_waives_a_deny if {
	reg := object.union(registry, {"approvals": {"apr-pay": {
		"agent_id": "support-bot", "environment": "prod", "tool": "payment_create", "args": {"amount": 5, "note": "AKIAABCDEFGHIJKLMNOP"},
		"expires_at_ns": 4102444800000000000,
	}}})
	request := with_context(call("support-bot", "payment_create", {"amount": 5, "note": "AKIAABCDEFGHIJKLMNOP"}), {"approval_token": "apr-pay"})
	d := data.warden.decision with input as request with data.warden_registry as reg
	d.effect == "deny"
	"secret-in-args" in rules_of(d)
}

grant_registry := object.union(registry, {
	"approvals": {"apr-pay": {
		"agent_id": "support-bot", "environment": "prod", "tool": "payment_create", "args": {"amount": 5},
		"expires_at_ns": 4102444800000000000,
	}},
	"approvals_consumed": ["apr-used"],
})

grant_decision(agent_id, args, extra) := d if {
	request := with_context(call(agent_id, "payment_create", args), object.union({"approval_token": "apr-pay"}, extra))
	reg := object.union(grant_registry, {"agents": {"twin-bot": registry.agents["support-bot"]}})
	d := data.warden.decision with input as request with data.warden_registry as reg
}

rejection_message(d) := r.message if {
	some r in d.reasons
	r.rule == "approval-grant-rejected"
}

test_grant_for_other_args_is_denied_naming_args if {
	d := grant_decision("support-bot", {"amount": 6}, {})
	d.effect == "deny"
	rejection_message(d) == "Approval grant apr-pay does not bind this action: args"
}

test_grant_of_another_agent_is_denied_naming_agent if {
	d := grant_decision("twin-bot", {"amount": 5}, {})
	rejection_message(d) == "Approval grant apr-pay does not bind this action: agent"
}

test_grant_for_another_environment_is_denied_naming_env if {
	d := grant_decision("support-bot", {"amount": 5}, {"environment": "dev"})
	rejection_message(d) == "Approval grant apr-pay does not bind this action: env"
}

test_grant_shipped_to_another_environment_is_denied_naming_env if {
	request := with_context(call("support-bot", "payment_create", {"amount": 5}), {"approval_token": "apr-pay", "environment": "dev"})
	reg := object.union(grant_registry, {"environment": "dev"})
	d := data.warden.decision with input as request with data.warden_registry as reg
	rejection_message(d) == "Approval grant apr-pay does not bind this action: env"
}

test_expired_grant_is_denied_naming_expiry if {
	reg := object.union(grant_registry, {"approvals": {"apr-pay": {"expires_at_ns": 946684800000000000}}})
	request := with_context(call("support-bot", "payment_create", {"amount": 5}), {"approval_token": "apr-pay"})
	d := data.warden.decision with input as request with data.warden_registry as reg
	rejection_message(d) == "Approval grant apr-pay does not bind this action: expiry"
}

test_consumed_grant_is_denied_naming_consumed if {
	request := with_context(call("support-bot", "payment_create", {"amount": 5}), {"approval_token": "apr-used"})
	d := data.warden.decision with input as request with data.warden_registry as grant_registry
	rejection_message(d) == "Approval grant apr-used does not bind this action: consumed"
}

test_unknown_grant_is_denied_naming_unknown if {
	request := with_context(call("support-bot", "payment_create", {"amount": 5}), {"approval_token": "nope"})
	d := data.warden.decision with input as request with data.warden_registry as grant_registry
	rejection_message(d) == "Approval grant nope does not bind this action: unknown"
}

test_grant_with_every_binding_wrong_names_them_all if {
	request := with_context(call("twin-bot", "email_send", {"to": "x@evil.test"}), {"approval_token": "apr-pay", "environment": "dev"})
	reg := object.union(grant_registry, {"agents": {"twin-bot": registry.agents["support-bot"]}})
	d := data.warden.decision with input as request with data.warden_registry as reg
	rejection_message(d) == "Approval grant apr-pay does not bind this action: agent, args, env, tool"
}

test_valid_grant_allows_exactly_its_action if {
	d := grant_decision("support-bot", {"amount": 5}, {})
	d.effect == "allow"
}

test_token_is_ignored_when_nothing_needs_approval if {
	request := with_context(call("support-bot", "ticket_read", {"id": 1}), {"approval_token": "nope"})
	d := data.warden.decision with input as request with data.warden_registry as grant_registry
	d.effect == "allow"
}

test_without_a_token_a_held_action_stays_held if {
	d := data.warden.decision with input as call("support-bot", "payment_create", {"amount": 5}) with data.warden_registry as grant_registry
	d.effect == "require_approval"
	not "approval-grant-rejected" in rules_of(d)
}

held_registry := object.union(registry, {"held_agents": {"support-bot": {"alert": 17, "reason": "new domain", "since": "2026-11-30T08:00:00Z"}}})

test_an_agent_the_detector_holds_needs_approval_for_any_action if {
	d := data.warden.decision with input as call("support-bot", "ticket_read", {}) with data.warden_registry as held_registry
	d.effect == "require_approval"
	some r in d.reasons
	r.rule == "detector-hold"
	r.message == "Agent support-bot is held by the anomaly detector (alert 17); a person must approve its actions until the alert is closed"
}

test_a_hold_does_not_weaken_a_deny if {
	request := call("support-bot", "shell", {"command": "rm -rf /"})
	d := data.warden.decision with input as request with data.warden_registry as held_registry
	d.effect == "deny"
}

test_a_hold_on_one_agent_leaves_others_alone if {
	reg := object.union(registry, {"held_agents": {"other-bot": {"alert": 1}}})
	d := data.warden.decision with input as call("support-bot", "ticket_read", {}) with data.warden_registry as reg
	d.effect == "allow"
}
