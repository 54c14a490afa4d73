package warden_test

import rego.v1

verified_delegation := {
	"verified": true,
	"chain": ["orchestrator", "support-bot"],
	"agents": ["orchestrator", "support-bot"],
	"origin": "orchestrator",
	"depth": 1,
	"grants": ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
	"scopes": ["read:tickets", "write:files", "payments:create", "email:send"],
	"constraints": {},
	"session": "s-1",
}

delegated(tool, args, facts) := object.union(call("support-bot", tool, args), {"delegation": facts})

test_delegated_call_within_scopes_is_allowed if {
	allowed(delegated("ticket_read", {}, verified_delegation))
}

test_delegated_call_beyond_scopes_is_denied if {
	denied_by(delegated("shell", {"command": "ls"}, verified_delegation), "delegation-scope")
}

test_unverified_delegation_is_denied if {
	denied_by(delegated("ticket_read", {}, object.union(verified_delegation, {"verified": false})), "delegation-unverified")
}

test_delegation_of_another_shape_is_denied if {
	denied_by(delegated("ticket_read", {}, "orchestrator"), "delegation-unverified")
	denied_by(delegated("ticket_read", {}, object.remove(verified_delegation, ["scopes"])), "delegation-unverified")
}

test_suspended_agent_in_chain_denies_everything_beneath_it if {
	facts := object.union(verified_delegation, {"agents": ["paused-orchestrator", "support-bot"]})
	denied_by(delegated("ticket_read", {}, facts), "delegation-agent-not-active")
}

test_unknown_agent_in_chain_is_denied if {
	facts := object.union(verified_delegation, {"agents": ["ghost", "support-bot"]})
	denied_by(delegated("ticket_read", {}, facts), "delegation-agent-not-active")
}

test_chain_ending_elsewhere_is_denied if {
	facts := object.union(verified_delegation, {"agents": ["orchestrator", "reader-bot"]})
	denied_by(delegated("ticket_read", {}, facts), "delegation-audience")
}

test_tool_list_limits_tools if {
	facts := object.union(verified_delegation, {"tools": ["ticket_read"]})
	allowed(delegated("ticket_read", {}, facts))
	denied_by(delegated("file_read", {"path": "/data/x"}, facts), "delegation-tool")
}

test_path_prefix_constraint if {
	facts := object.union(verified_delegation, {"constraints": {"path_prefix": "/data/"}})
	allowed(delegated("file_read", {"path": "/data/report.txt"}, facts))
	denied_by(delegated("file_read", {"path": "/home/x"}, facts), "delegation-path")
	denied_by(delegated("file_read", {"path": "/data/../etc/passwd"}, facts), "delegation-path")
	denied_by(delegated("file_read", {"path": 7}, facts), "delegation-path")
}

test_amount_ceiling_constraint if {
	facts := object.union(verified_delegation, {"constraints": {"max_amount": 100}})
	d := decide(delegated("payment_create", {"amount": 50, "currency": "EUR"}, facts))
	not "delegation-amount" in rules_of(d)
	denied_by(delegated("payment_create", {"amount": 101, "currency": "EUR"}, facts), "delegation-amount")
	denied_by(delegated("payment_create", {"amount": "5", "currency": "EUR"}, facts), "delegation-amount")
}

test_recipient_domain_constraint if {
	facts := object.union(verified_delegation, {"constraints": {"recipient_domain": "example.com"}})
	d := decide(delegated("email_send", {"to": "bob@example.com"}, facts))
	not "delegation-recipient" in rules_of(d)
	denied_by(delegated("email_send", {"to": "eve@evil.com"}, facts), "delegation-recipient")
	denied_by(delegated("email_send", {"to": ["bob@example.com", "eve@example.com.evil.com"]}, facts), "delegation-recipient")
	denied_by(delegated("email_send", {"to": "eve@evil.com@example.com"}, facts), "delegation-recipient")
}

test_call_without_delegation_is_unaffected if {
	allowed(call("support-bot", "ticket_read", {}))
}

test_raw_chain_reaching_the_policy_is_denied if {
	denied_by(with_context(call("support-bot", "ticket_read", {}), {"delegation": "wdc1.W10"}), "delegation-unverified")
}
