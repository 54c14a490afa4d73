package warden_test

import rego.v1

test_allowlisted_host_is_allowed if {
	allowed(call("support-bot", "http_request", {"method": "GET", "url": "https://api.example.com/v1/tickets?id=3"}))
}

test_exact_allowlisted_host_with_port_is_allowed if {
	allowed(call("support-bot", "http_request", {"url": "https://API.stripe.com:443/v1/charges"}))
}

test_host_off_the_allowlist_is_denied if {
	d := decide(call("support-bot", "http_request", {"url": "https://attacker.net/exfil"}))
	d.effect == "deny"
	some r in d.reasons
	r.rule == "egress-not-allowlisted"
	r.message == "Host attacker.net is not on the egress allowlist of agent support-bot"
}

test_glob_does_not_match_deeper_subdomains if {
	denied_by(call("support-bot", "http_request", {"url": "https://a.b.example.com/"}), "egress-not-allowlisted")
}

test_userinfo_cannot_disguise_the_host if {
	denied_by(call("support-bot", "http_request", {"url": "https://api.example.com@attacker.net/"}), "ambiguous-url")
}

test_suffix_lookalike_host_is_denied if {
	denied_by(call("support-bot", "http_request", {"url": "http://api.example.com.attacker.net/"}), "egress-not-allowlisted")
}

test_agent_without_allowlist_has_no_egress if {
	reg := object.union(registry, {"agents": {"reader-bot": {"scopes": ["net:http"]}}})
	d := data.warden.decision with input as call("reader-bot", "http_request", {"url": "https://api.example.com/"}) with data.warden_registry as reg
	d.effect == "deny"
	"egress-not-allowlisted" in rules_of(d)
}

test_non_http_url_is_denied if {
	denied_by(call("support-bot", "http_request", {"url": "file:///etc/passwd"}), "egress-url-invalid")
}

test_missing_url_is_denied if {
	denied_by(call("support-bot", "http_request", {"method": "GET"}), "egress-url-invalid")
}
