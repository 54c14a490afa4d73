package warden_test

import rego.v1

test_unregistered_tool_is_denied if {
	denied_by(call("support-bot", "launch_missiles", {}), "unknown-tool")
}

test_registered_tool_is_not_unknown if {
	d := decide(call("support-bot", "file_write", {"path": "/tmp/a"}))
	not "unknown-tool" in rules_of(d)
	d.allow
}

test_tool_without_required_scope_is_denied if {
	d := decide(call("reader-bot", "file_write", {"path": "/tmp/a"}))
	d.effect == "deny"
	some r in d.reasons
	r.rule == "missing-scope"
	r.message == "Tool file_write requires scope write:files, which agent reader-bot does not hold"
}

test_tool_with_required_scope_is_allowed if {
	allowed(call("reader-bot", "ticket_read", {"id": 1}))
}

test_input_scopes_narrow_registry_scopes if {
	request := object.union(call("support-bot", "file_write", {"path": "/tmp/a"}), {"agent": {"scopes": ["read:tickets"]}})
	denied_by(request, "missing-scope")
}

test_input_scopes_cannot_widen_registry_scopes if {
	request := object.union(call("reader-bot", "file_write", {"path": "/tmp/a"}), {"agent": {"scopes": ["write:files"]}})
	denied_by(request, "missing-scope")
}

test_input_scopes_within_registry_are_allowed if {
	request := object.union(call("support-bot", "file_write", {"path": "/tmp/a"}), {"agent": {"scopes": ["write:files"]}})
	allowed(request)
}

# missing_scopes in two rules (registry grant, input narrowing) instead of a function: each
# way a scope can be missing, alone and together, and an unknown agent missing them all.
two_scope_registry := object.union(registry, {"tools": {"report": {"scopes": ["read:tickets", "write:files"]}}})

missing_of(request) := missing if {
	missing := data.warden.missing_scopes with input as request with data.warden_registry as two_scope_registry
}

test_missing_scopes_of_each_source if {
	missing_of(call("support-bot", "report", {})) == set()
	missing_of(call("reader-bot", "report", {})) == {"write:files"}
	narrowed := object.union(call("support-bot", "report", {}), {"agent": {"scopes": ["write:files"]}})
	missing_of(narrowed) == {"read:tickets"}
	both := object.union(call("reader-bot", "report", {}), {"agent": {"scopes": ["write:files"]}})
	missing_of(both) == {"read:tickets", "write:files"}
	empty := object.union(call("support-bot", "report", {}), {"agent": {"scopes": []}})
	missing_of(empty) == {"read:tickets", "write:files"}
	missing_of(call("nobody", "report", {})) == {"read:tickets", "write:files"}
}
