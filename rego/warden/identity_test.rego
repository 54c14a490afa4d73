package warden_test

import rego.v1

test_missing_agent_id_is_malformed if {
	denied_by({"action": {"tool": "ticket_read", "args": {}}}, "malformed-input")
}

test_missing_tool_is_malformed if {
	denied_by({"agent": {"id": "support-bot"}, "action": {"args": {}}}, "malformed-input")
}

test_non_string_agent_id_is_malformed if {
	denied_by({"agent": {"id": 42}, "action": {"tool": "ticket_read"}}, "malformed-input")
}

test_well_formed_input_is_not_malformed if {
	d := decide(call("support-bot", "ticket_read", {}))
	not "malformed-input" in rules_of(d)
}

test_unknown_agent_is_denied if {
	denied_by(call("ghost-bot", "ticket_read", {}), "unknown-agent")
}

test_registered_agent_is_not_unknown if {
	d := decide(call("reader-bot", "ticket_read", {}))
	not "unknown-agent" in rules_of(d)
	d.allow
}

test_suspended_agent_is_denied if {
	denied_by(call("suspended-bot", "ticket_read", {}), "agent-not-active")
}

test_revoked_agent_is_denied if {
	d := decide(call("revoked-bot", "ticket_read", {}))
	d.effect == "deny"
	some r in d.reasons
	r.rule == "agent-not-active"
	r.message == "Agent revoked-bot is revoked"
}

test_agent_without_status_is_denied if {
	reg := object.union(registry, {"agents": {"nostatus-bot": {"scopes": ["read:tickets"]}}})
	d := data.warden.decision with input as call("nostatus-bot", "ticket_read", {}) with data.warden_registry as reg
	d.effect == "deny"
	"agent-not-active" in rules_of(d)
}

test_suspending_an_agent_in_data_flips_allow_to_deny if {
	request := call("reader-bot", "ticket_read", {})
	allowed(request)
	reg := object.union(registry, {"agents": {"reader-bot": {"status": "suspended"}}})
	d := data.warden.decision with input as request with data.warden_registry as reg
	d.effect == "deny"
	"agent-not-active" in rules_of(d)
}

test_acting_for_suspended_orchestrator_is_denied if {
	request := with_context(call("reader-bot", "ticket_read", {}), {"on_behalf_of": ["orchestrator", "paused-orchestrator"]})
	denied_by(request, "delegator-not-active")
}

test_acting_for_unknown_orchestrator_is_denied if {
	request := with_context(call("reader-bot", "ticket_read", {}), {"on_behalf_of": ["ghost"]})
	denied_by(request, "delegator-not-active")
}

test_acting_for_active_orchestrator_is_allowed if {
	allowed(with_context(call("reader-bot", "ticket_read", {}), {"on_behalf_of": ["orchestrator"]}))
}
