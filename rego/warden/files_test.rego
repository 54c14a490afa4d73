package warden_test

import rego.v1

test_prod_delete_requires_approval if {
	d := decide(call("support-bot", "file_delete", {"path": "/prod/db/orders.sqlite"}))
	d.effect == "require_approval"
	d.reasons[0].rule == "no-prod-deletes"
	d.reasons[0].message == "Production file deletion requires human approval"
}

test_deleting_the_protected_directory_itself_requires_approval if {
	needs_approval_by(call("support-bot", "file_delete", {"path": "/prod"}), "no-prod-deletes")
}

test_every_protected_path_is_protected if {
	needs_approval_by(call("support-bot", "file_delete", {"path": "/etc/passwd"}), "no-prod-deletes")
}

test_delete_outside_protected_paths_is_allowed if {
	allowed(call("support-bot", "file_delete", {"path": "/tmp/scratch.txt"}))
}

test_lookalike_path_is_not_protected if {
	allowed(call("support-bot", "file_delete", {"path": "/production-notes/a.txt"}))
}

test_writing_under_prod_requires_approval if {
	# writing truncates: a file tool that is not read-only is destructive
	needs_approval_by(call("support-bot", "file_write", {"path": "/prod/x"}), "no-prod-deletes")
}

test_reading_under_prod_is_allowed if {
	allowed(call("support-bot", "file_read", {"path": "/prod/x"}))
}

test_valid_approval_token_allows_prod_delete if {
	allowed(with_context(call("support-bot", "file_delete", {"path": "/prod/x"}), {"approval_token": "apr-valid"}))
}

test_approval_token_for_other_args_does_not_allow if {
	request := with_context(call("support-bot", "file_delete", {"path": "/prod/y"}), {"approval_token": "apr-valid"})
	denied_by(request, "approval-grant-rejected")
}

test_expired_approval_token_does_not_allow if {
	request := with_context(call("support-bot", "file_delete", {"path": "/prod/x"}), {"approval_token": "apr-expired"})
	denied_by(request, "approval-grant-rejected")
}

test_unknown_approval_token_does_not_allow if {
	request := with_context(call("support-bot", "file_delete", {"path": "/prod/x"}), {"approval_token": "made-up"})
	denied_by(request, "approval-grant-rejected")
}

test_approval_token_of_another_agent_does_not_allow if {
	reg := object.union(registry, {"agents": {"twin-bot": registry.agents["support-bot"]}})
	request := with_context(call("twin-bot", "file_delete", {"path": "/prod/x"}), {"approval_token": "apr-valid"})
	d := data.warden.decision with input as request with data.warden_registry as reg
	d.effect == "deny"
	"approval-grant-rejected" in rules_of(d)
}

test_dot_dot_path_is_denied if {
	denied_by(call("support-bot", "file_delete", {"path": "/tmp/../prod/x"}), "path-not-canonical")
}

test_relative_path_is_denied if {
	denied_by(call("support-bot", "file_delete", {"path": "prod/x"}), "path-not-canonical")
}

test_double_slash_path_is_denied if {
	denied_by(call("support-bot", "file_delete", {"path": "//prod/x"}), "path-not-canonical")
}

test_canonical_path_is_not_flagged if {
	d := decide(call("support-bot", "file_delete", {"path": "/tmp/a.b/c..d"}))
	not "path-not-canonical" in rules_of(d)
	d.allow
}
