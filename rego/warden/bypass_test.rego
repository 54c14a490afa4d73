# One test per bypass class an independent review found (issue 10): each spelling here
# got an allow (or a different answer under real OPA) from the pack before the input
# contract. They run under regorus and real OPA (`nox -s opa-oracle`).
package warden_test

import rego.v1

# 1. Real OPA disagreed: `not is_array(input.agent.scopes)` is undefined in OPA when the
#    input lists no scopes, so an in-scope call was denied there and allowed here.
test_class1_absent_input_scopes_use_the_registry_grant if {
	allowed(call("support-bot", "ticket_read", {}))
}

# 2. Egress decided on another host than the client connects to.
test_class2_backslash_in_authority_is_ambiguous if {
	denied_by(call("support-bot", "http_request", {"url": "http://localhost\\.example.com/x"}), "ambiguous-url")
	denied_by(call("support-bot", "http_request", {"url": "http://127.0.0.1\\@api.example.com/x"}), "ambiguous-url")
}

test_class2_numeric_ipv4_spellings_are_ambiguous if {
	every host in ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "127.000.000.001"] {
		denied_by(call("support-bot", "http_request", {"url": sprintf("http://%s/x", [host])}), "ambiguous-url")
	}
}

test_class2_unicode_hosts_are_ambiguous if {
	denied_by(call("support-bot", "http_request", {"url": "https://exİmple.com/"}), "ambiguous-url")
	denied_by(call("support-bot", "http_request", {"url": "https://ａｐｉ.example.com/"}), "ambiguous-url")
}

test_class2_every_url_argument_is_judged if {
	denied_by(call("support-bot", "http_request", {"url": "https://api.example.com/", "endpoint": "https://evil.net/"}), "egress-not-allowlisted")
	denied_by(call("support-bot", "http_request", {"urls": ["https://api.example.com/", "https://evil.net/"]}), "egress-not-allowlisted")
	denied_by(call("support-bot", "http_request", {"url": ["https://evil.net/"]}), "malformed-args")
}

test_class2_canonical_ipv4_is_judged_by_the_allowlist if {
	d := decide(call("support-bot", "http_request", {"url": "http://127.0.0.1/x"}))
	rules_of(d) == {"egress-not-allowlisted"}
}

# 3. Type and shape confusion on file paths.
test_class3_path_as_a_list_is_malformed if {
	denied_by(call("support-bot", "file_delete", {"path": ["/prod/x"]}), "malformed-args")
}

test_class3_other_file_argument_names_are_judged if {
	every name in ["file", "target", "dest", "src", "filename"] {
		needs_approval_by(call("support-bot", "file_delete", {name: "/prod/x"}), "no-prod-deletes")
	}
	needs_approval_by(call("support-bot", "file_delete", {"paths": ["/tmp/a", "/prod/x"]}), "no-prod-deletes")
}

test_class3_upper_case_argument_names_are_malformed if {
	denied_by(call("support-bot", "file_delete", {"Path": "/prod/x"}), "malformed-args")
}

test_class3_case_of_protected_paths_is_ignored if {
	needs_approval_by(call("support-bot", "file_delete", {"path": "/PROD/x"}), "no-prod-deletes")
	needs_approval_by(call("support-bot", "file_delete", {"path": "/Prod"}), "no-prod-deletes")
}

test_class3_lookalike_and_nul_paths_are_refused if {
	denied_by(call("support-bot", "file_delete", {"path": "/ｐｒｏｄ/x"}), "path-not-canonical")
	denied_by(call("support-bot", "file_delete", {"path": "/prod\u0000/x"}), "malformed-args")
	denied_by(call("support-bot", "file_delete", {"path": "\\prod\\x"}), "path-not-canonical")
}

test_class3_on_behalf_of_as_a_string_is_malformed if {
	denied_by(with_context(call("support-bot", "ticket_read", {}), {"on_behalf_of": "paused-orchestrator"}), "malformed-input")
}

# 4. git refs.
test_class4_refspec_spellings_of_main_need_approval if {
	every ref in ["refs/heads/main", "HEAD:main", "+main", "HEAD:refs/heads/main", ":main", "feature:main", "MAIN"] {
		needs_approval_by(call("support-bot", "git_push", {"branch": ref}), "protected-branch-push")
	}
	needs_approval_by(call("support-bot", "git_push", {"refspec": "+HEAD:main"}), "protected-branch-push")
	needs_approval_by(call("support-bot", "git_push", {"branch": ["feature/x", "main"]}), "protected-branch-push")
}

test_class4_nested_release_branches_are_protected if {
	needs_approval_by(call("support-bot", "git_push", {"branch": "release/2.0/hotfix"}), "protected-branch-push")
}

test_class4_refs_git_would_refuse_are_malformed if {
	denied_by(call("support-bot", "git_push", {"branch": "HEAD"}), "malformed-args")
	denied_by(call("support-bot", "git_push", {"branch": "a:b:main"}), "malformed-args")
	denied_by(call("support-bot", "git_push", {"branch": {"name": "main"}}), "malformed-args")
}

test_class4_feature_branch_is_still_allowed if {
	allowed(call("support-bot", "git_push", {"branch": "refs/heads/feature/x"}))
}

# 5. E-mail recipients.
test_class5_comma_separated_recipients_are_each_judged if {
	needs_approval_by(call("support-bot", "email_send", {"to": "bob@example.com, x@evil.com"}), "external-email-requires-approval")
	needs_approval_by(call("support-bot", "email_send", {"to": "x@evil.com; bob@example.com"}), "external-email-requires-approval")
}

test_class5_header_injection_is_malformed if {
	denied_by(call("support-bot", "email_send", {"to": "bob@example.com\r\nBcc: x@evil.com"}), "malformed-args")
}

test_class5_recipient_objects_are_malformed if {
	denied_by(call("support-bot", "email_send", {"to": [{"email": "x@evil.com"}]}), "malformed-args")
}

test_class5_every_recipient_field_is_judged if {
	every field in ["cc", "bcc", "reply_to", "recipients"] {
		needs_approval_by(call("support-bot", "email_send", {"to": "bob@example.com", field: "x@evil.com"}), "external-email-requires-approval")
	}
	needs_approval_by(call("support-bot", "email_send", {"to": "Mallory <x@evil.com>"}), "external-email-requires-approval")
	denied_by(call("support-bot", "email_send", {"to": "\"bob@example.com\" <x@evil.com>"}), "malformed-args")
}

test_class5_internal_named_recipient_is_allowed if {
	allowed(call("support-bot", "email_send", {"to": "Bob <bob@example.com>, carol@EXAMPLE.com"}))
}

# 6. Secrets and cards next to non-ASCII letters and digits, as keys, in the context.
test_class6_secret_touching_unicode_is_found if {
	denied_by(call("support-bot", "ticket_read", {"note": "éAKIAABCDEFGHIJKLMNOP"}), "secret-in-args")
	denied_by(call("support-bot", "ticket_read", {"note": "AKIAABCDEFGHIJKLMNOP٣"}), "secret-in-args")
}

test_class6_card_touching_unicode_is_masked if {
	d := decide(call("support-bot", "ticket_read", {"note": "é4111111111111111"}))
	d.obligations.mask == ["/action/args/note"]
}

test_class6_secret_as_key_or_in_context_is_refused if {
	denied_by(call("support-bot", "ticket_read", {"ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": true}), "secret-in-args")
	denied_by(with_context(call("support-bot", "ticket_read", {}), {"note": "sk_live_aaaaaaaaaaaaaaaaaaaa"}), "secret-in-context")
}

# 7. Engine errors: a NUL in a branch made regorus' glob.match fail and the approval rule
#    vanish; the contract now refuses it before any glob runs.
test_class7_nul_in_a_branch_is_refused_not_dropped if {
	d := decide(call("support-bot", "git_push", {"branch": "ma\u0000in"}))
	d.effect == "deny"
	"malformed-args" in rules_of(d)
}

test_class7_non_string_command_is_malformed if {
	denied_by(call("support-bot", "shell", {"command": 1}), "malformed-args")
	denied_by(call("support-bot", "shell", {"cmd": "rm -rf /", "command": "ls"}), "malformed-args")
}

# 8. Numbers: counters beyond 2^53 or fractional are not judged, they are refused.
test_class8_inexact_counters_are_malformed if {
	denied_by(with_context(call("support-bot", "ticket_read", {}), {"counters": {"agent": {"calls_per_minute": 1.5}}}), "malformed-input")
	denied_by(with_context(call("support-bot", "ticket_read", {}), {"counters": {"agent": {"calls_per_minute": 1e30}}}), "malformed-input")
}
