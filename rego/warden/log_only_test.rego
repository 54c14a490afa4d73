package warden_test

import rego.v1

# An organisation module that declares `log_only := true` is evaluated, not enforced: the
# decision's allow/effect are the enforced ones, and "log_only" carries what it would do.
shadow_rule := {"rule": "no-tickets-at-night", "message": "Tickets are not read at night", "controls": ["soc2.CC6.1"]}

org_with(log_only, effect_set) := {"night": object.union({effect_set: {shadow_rule}}, log_only)}

test_log_only_deny_is_logged_not_enforced if {
	d := decide(call("support-bot", "ticket_read", {})) with data.warden.org as org_with({"log_only": true}, "deny")
	d.allow == true
	d.effect == "allow"
	d.reasons == []
	d.log_only.effect == "deny"
	d.log_only.allow == false
	d.log_only.reasons == [shadow_rule]
}

test_log_only_hold_is_logged_not_enforced if {
	d := decide(call("support-bot", "ticket_read", {})) with data.warden.org as org_with({"log_only": true}, "approval_required")
	d.effect == "allow"
	d.log_only.effect == "require_approval"
}

test_enforced_module_denies_and_has_no_log_only_part if {
	d := decide(call("support-bot", "ticket_read", {})) with data.warden.org as org_with({}, "deny")
	d.effect == "deny"
	d.reasons == [shadow_rule]
	not d.log_only
}

test_log_only_other_than_true_is_enforced if {
	d := decide(call("support-bot", "ticket_read", {})) with data.warden.org as org_with({"log_only": "yes"}, "deny")
	d.effect == "deny"
	not d.log_only
}

test_log_only_keeps_a_library_deny if {
	d := decide(call("support-bot", "no_such_tool", {})) with data.warden.org as org_with({"log_only": true}, "approval_required")
	d.effect == "deny"
	d.log_only.effect == "deny"
}

test_no_log_only_part_without_organisation_policy if {
	d := decide(call("support-bot", "ticket_read", {})) with data.warden.org as {}
	not d.log_only
}
