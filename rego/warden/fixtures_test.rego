# Shared fixtures for the policy tests: a registry as the control plane would put it
# in the bundle's data.json, and helpers that decide an input against it.
package warden_test

import rego.v1

registry := {
	"agents": {
		"support-bot": {
			"status": "active",
			"owner": "alice@example.com",
			"scopes": ["read:tickets", "write:files", "net:http", "shell:exec", "payments:create", "email:send", "git:push", "db:write"],
			"key_ids": ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
			"egress": {"allow_hosts": ["*.example.com", "api.stripe.com"]},
			"shell": {"allow_commands": ["ls", "git status"]},
			"rate_limits": {"calls_per_minute": 60},
		},
		"suspended-bot": {"status": "suspended", "scopes": ["read:tickets"]},
		"revoked-bot": {"status": "revoked", "scopes": ["read:tickets"]},
		"orchestrator": {"status": "active", "scopes": ["read:tickets"]},
		"paused-orchestrator": {"status": "suspended", "scopes": ["read:tickets"]},
		"reader-bot": {"status": "active", "scopes": ["read:tickets"]},
	},
	"tools": {
		"ticket_read": {"scopes": ["read:tickets"]},
		"file_read": {"scopes": ["read:tickets"], "category": "file"},
		"file_write": {"scopes": ["write:files"], "category": "file"},
		"file_delete": {"scopes": ["write:files"]},
		"http_request": {"scopes": ["net:http"], "category": "network"},
		"shell": {"scopes": ["shell:exec"], "category": "shell"},
		"payment_create": {"scopes": ["payments:create"], "category": "payment", "rate_limits": {"calls_per_hour": 10}},
		"email_send": {"scopes": ["email:send"], "category": "email"},
		"git_push": {"scopes": ["git:push"], "category": "git_push"},
		"db_drop_table": {"scopes": ["db:write"], "irreversible": true},
		"ticket_update": {"scopes": ["read:tickets"], "args_schema": ticket_update_schema},
	},
	"protected_paths": ["/prod/", "/etc/"],
	"destructive_file_tools": ["file_delete"],
	"protected_branches": ["main", "release/*"],
	"internal_email_domains": ["example.com"],
	"rate_limits": {"calls_per_minute": 120, "calls_per_hour": 2000},
	"environment": "prod",
	"approvals": {
		"apr-valid": {
			"agent_id": "support-bot", "environment": "prod", "tool": "file_delete", "args": {"path": "/prod/x"},
			"expires_at_ns": 4102444800000000000,
		},
		"apr-expired": {
			"agent_id": "support-bot", "environment": "prod", "tool": "file_delete", "args": {"path": "/prod/x"},
			"expires_at_ns": 946684800000000000,
		},
	},
}

# A catalog argument schema (args_schema.rego).
ticket_update_schema := {
	"type": "object",
	"properties": {
		"id": {"type": "integer"},
		"status": {"enum": ["open", "closed"]},
		"labels": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
		"note": {"type": ["string", "null"], "maxLength": 20},
	},
	"required": ["id"],
	"additionalProperties": false,
}

call(agent_id, tool, args) := {
	"agent": {"id": agent_id, "name": agent_id, "owner": "alice@example.com"},
	"action": {"type": "tool_call", "tool": tool, "args": args},
	"context": {"session_id": "s-1", "environment": "prod", "time": "2026-01-01T00:00:00Z"},
}

with_context(request, extra) := object.union(request, {"context": object.union(request.context, extra)})

decide(request) := d if {
	d := data.warden.decision with input as request with data.warden_registry as registry
}

rules_of(decision) := {r.rule | some r in decision.reasons}

allowed(request) if {
	d := decide(request)
	d.allow == true
	d.effect == "allow"
	d.reasons == []
}

denied_by(request, rule) if {
	d := decide(request)
	d.allow == false
	d.effect == "deny"
	rule in rules_of(d)
}

needs_approval_by(request, rule) if {
	d := decide(request)
	d.allow == false
	d.effect == "require_approval"
	rule in rules_of(d)
}
