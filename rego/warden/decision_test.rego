package warden_test

import rego.v1

# The example of shared/DESIGN.md, decided as written: deleting under /prod/ waits for a person.
design_example := {
	"agent": {"id": "support-bot", "name": "Support bot", "owner": "alice@example.com", "scopes": ["read:tickets", "write:files"]},
	"action": {"type": "tool_call", "tool": "file_delete", "args": {"path": "/prod/x"}, "server": "files-mcp"},
	"context": {
		"session_id": "s-1", "environment": "prod", "time": "2026-01-01T00:00:00Z",
		"on_behalf_of": ["orchestrator"],
	},
}

test_design_example_requires_approval_for_prod_delete if {
	d := decide(design_example)
	d.allow == false
	d.effect == "require_approval"
	some r in d.reasons
	r.rule == "no-prod-deletes"
	r.message == "Production file deletion requires human approval"
	"eu_ai_act.art14(1)" in r.controls
	d.obligations == {"log": true, "mask": []}
}

test_decision_is_an_object_for_empty_input if {
	d := data.warden.decision with input as {} with data.warden_registry as registry
	d.allow == false
	d.effect == "deny"
	count(d.reasons) > 0
	d.obligations.log == true
}

test_decision_is_deny_without_registry_data if {
	d := data.warden.decision with input as call("support-bot", "ticket_read", {})
	d.allow == false
	d.effect == "deny"
	"unknown-agent" in rules_of(d)
}

test_decision_has_contract_keys if {
	# Without organisation policy: a log-only module adds the "log_only" key (log_only_test.rego).
	d := decide(call("support-bot", "ticket_read", {"id": 7})) with data.warden.org as {}
	object.keys(d) == {"allow", "effect", "reasons", "obligations"}
	object.keys(d.obligations) == {"log", "mask"}
}

test_registered_agent_in_scope_is_allowed if {
	allowed(call("support-bot", "ticket_read", {"id": 7}))
}

test_deny_outranks_require_approval if {
	# A suspended agent asking for a prod delete is denied, not sent for approval.
	d := decide(call("suspended-bot", "file_delete", {"path": "/prod/x"}))
	d.effect == "deny"
	"agent-not-active" in rules_of(d)
}

test_require_approval_outranks_allow if {
	needs_approval_by(call("support-bot", "payment_create", {"amount": 10}), "payment-requires-approval")
}

test_reasons_are_sorted_by_rule if {
	d := decide(call("suspended-bot", "file_delete", {"path": "/prod/x"}))
	ids := [r.rule | some r in d.reasons]
	ids == sort(ids)
	count(ids) >= 2
}
