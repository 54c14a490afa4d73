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
		"agent_id": "support-bot", "tool": "payment_create", "args": {"amount": 5},
		"expires_at_ns": 4102444800000000000,
	}}})
	request := with_context(call("support-bot", "payment_create", {"amount": 5}), {"approval_token": "apr-pay"})
	d := data.warden.decision with input as request with data.warden_registry as reg
	d.effect == "allow"
}

test_approval_never_waives_a_deny if {
	reg := object.union(registry, {"approvals": {"apr-pay": {
		"agent_id": "support-bot", "tool": "payment_create", "args": {"amount": 5, "note": "AKIAABCDEFGHIJKLMNOP"},
		"expires_at_ns": 4102444800000000000,
	}}})
	request := with_context(call("support-bot", "payment_create", {"amount": 5, "note": "AKIAABCDEFGHIJKLMNOP"}), {"approval_token": "apr-pay"})
	d := data.warden.decision with input as request with data.warden_registry as reg
	d.effect == "deny"
	"secret-in-args" in rules_of(d)
}
