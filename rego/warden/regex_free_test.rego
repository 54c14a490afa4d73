# Checks the pack makes with string builtins where it used to build a regex at every call
# (docs/rego-engine.md, "Where the VM spends a decision"). Each is compared here with the
# regex it replaces, on hostile strings, under regorus and real OPA alike (nox -s opa-oracle),
# and decisions that depend on it are checked end to end.
package warden_test

import rego.v1

# Other types of text: control characters, DEL, space, Unicode letters, digits and spaces,
# look-alikes, a lone separator, long strings.
hostile_texts := [
	"", " ", "a", "support-bot", "file_delete", "a b", " a", "a ", "\u0000", "a\u0000", "\t", "a\nb", "\r", "\u007f", "a\u007f",
	"\u0080", "é", "ｓｈｅｌｌ", "\u00a0", "\u2028", "😀", "!", "~", "!~", "\"", "\\", "`", "{}", "[a]", "a:b@c",
	"٤١١١", "４１１１", "path_9", "Path", "PATH", "pa-th", "pa.th", "_", "0", "a_b_0",
	concat("", ["x" | some _ in numbers.range(1, 3000)]),
	concat("", [concat("", ["x" | some _ in numbers.range(1, 3000)]), "\u0000"]),
]

agrees_with(check, pattern, s) if {
	check
	regex.match(pattern, s)
}

agrees_with(check, pattern, s) if {
	not check
	not regex.match(pattern, s)
}

printable_ascii_holds(s) := true if data.warden.printable_ascii(s) else := false

printable_text_holds(s) := true if data.warden.printable_text(s) else := false

lowercase_name_holds(s) := true if data.warden.lowercase_name(s) else := false

test_the_trim_character_sets_are_exactly_printable_ascii if {
	chars := split(data.warden.printable_ascii_characters, "")
	count(chars) == 94
	chars[0] == "!"
	chars[93] == "~"
	every i in numbers.range(1, 93) {
		chars[i - 1] < chars[i] # 94 increasing characters from 0x21 to 0x7e: each of them once
	}
	data.warden.printable_text_characters == concat("", [" ", data.warden.printable_ascii_characters])
}

test_printable_checks_agree_with_the_regexes_they_replace if {
	every s in hostile_texts {
		agrees_with(printable_ascii_holds(s), `^[\x21-\x7e]+$`, s)
		agrees_with(printable_text_holds(s), `^[\x20-\x7e]*$`, s)
		agrees_with(lowercase_name_holds(s), `^[a-z0-9_]+$`, s)
	}
}

test_identifiers_are_checked_without_a_regex if {
	every id in ["support bot", "", "support-bot\u0000", "support-bot\u007f", "suppört-bot", "ｓｕｐｐｏｒｔ", "support-bot\n"] {
		some [field, _] in data.warden.input_violations with input as call(id, "ticket_read", {}) with data.warden_registry as registry
		field == "agent.id"
	}
	every tool in ["ticket read", "", "ticket_read\t", "tïcket_read", "ticket_read\u007f"] {
		some [field, _] in data.warden.input_violations with input as call("support-bot", tool, {}) with data.warden_registry as registry
		field == "action.tool"
	}
	data.warden.identifiers_printable with input as call("support-bot", "ticket_read", {}) with data.warden_registry as registry
	allowed(call("support-bot", "ticket_read", {}))
}

test_argument_names_and_judged_strings_are_checked_without_a_regex if {
	every key in ["Path", "pa th", "pâth", "", "path\u0000", "pa-th"] {
		denied_by(call("support-bot", "file_write", {"path": "/tmp/a", key: "x"}), "malformed-args")
	}
	every path in ["/tmp/a\u007f", "/tmp/\u00a0a", "/tmp/é", "/tmp/a\u2028"] {
		denied_by(call("support-bot", "file_write", {"path": path}), "path-not-canonical")
	}
	denied_by(call("support-bot", "file_write", {"path": "/tmp/a\u0000"}), "malformed-args")
	allowed(call("support-bot", "file_write", {"path": "/tmp/a_b-9 ~!"}))
}

# -- URLs (egress.rego) ------------------------------------------------------------------

url_pattern := `^[hH][tT][tT][pP][sS]?://([^/?#]*)([/?#].*)?$`

authority_pattern := `^([^:@\[\]]+)(:[0-9]{1,5})?$`

hostile_urls := [
	"https://api.example.com/x", "http://api.example.com", "HTTPS://API.EXAMPLE.COM/X", "hTtP://a.example.com?x=1",
	"https://a.example.com#f/x", "https://a.example.com:443/x", "https://a.example.com:0", "https://a.example.com:65535/",
	"https://a.example.com:123456/", "https://a.example.com:/", "https://a.example.com:1:2/", "https://a.example.com:8a/",
	"https://[::1]/", "https://[::1]:80/", "https://user@a.example.com/", "https://a@b:1/", "https://", "http:///x",
	"https:/a.example.com/", "ftp://a.example.com/", "https//a.example.com", "httpss://a.example.com/", "http://?x",
	"http://#", "https://a.example.com/b/c?d=e#f", "https://a%40b.example.com/", "https://a.example.com]/",
	"https://a.example.com\\@attacker.net/", "http://2130706433/", "https://a.example.com:٤٤٣/",
]

# The authority and host the regexes gave, for a URL the pack parses (printable ASCII, no
# space: printable_urls), and null where they gave none.
regex_parsed(url) := {"authority": regex_authority(url), "host": regex_host(url)} if {
	regex.match(`^[\x21-\x7e]+$`, url)
} else := {"authority": null, "host": null}

regex_authority(url) := match[1] if {
	some match in regex.find_all_string_submatch_n(url_pattern, url, 1)
} else := null

regex_host(url) := lower(match[1]) if {
	authority := regex_authority(url)
	is_string(authority)
	some match in regex.find_all_string_submatch_n(authority_pattern, authority, 1)
} else := null

parsed(url) := {"authority": object.get(authorities, url, null), "host": object.get(hosts, url, null)} if {
	request := call("support-bot", "http_request", {"url": url})
	authorities := data.warden.url_authorities with input as request with data.warden_registry as registry
	hosts := data.warden.url_hosts with input as request with data.warden_registry as registry
}

test_urls_are_parsed_as_the_regexes_read_them if {
	every url in hostile_urls {
		parsed(url) == regex_parsed(url)
	}
}

test_url_hosts_and_ports_decide_as_before if {
	allowed(call("support-bot", "http_request", {"url": "HTTPS://API.example.com:8443/x?y#z"}))
	allowed(call("support-bot", "http_request", {"url": "http://api.example.com"}))
	every url in ["https://api.example.com:123456/", "https://api.example.com:/", "https://api.example.com:1:2/", "https://[::1]/", "http:///x", "ftp://api.example.com/", "https:/api.example.com/"] {
		denied_by(call("support-bot", "http_request", {"url": url}), "egress-url-invalid")
	}
	denied_by(call("support-bot", "http_request", {"url": "https://api.example.com@attacker.net/"}), "ambiguous-url")
	denied_by(call("support-bot", "http_request", {"url": "https://attacker.net:443/"}), "egress-not-allowlisted")
}

# -- card numbers (sensitive_data.rego) ------------------------------------------------

card_texts := [
	"4111 1111 1111 1111", "4111111111111111", "4111-1111-1111-1111", "4111 1111-1111 1111", "4111 1111 1111 1112",
	"4222222222222", "6011000990139424009", "4111 1111 1111 1111 1111", "12345678901234567001", "4111  1111 1111 1111",
	"4111--1111-1111-1111", "4111 -1111 1111 1111", "-4111111111111111", "4111111111111111-", " 4111111111111111",
	"4111111111111111 ", "card 4111 1111 1111 1111", "4111111111111111 4111111111111111", "4111111111111112 4111111111111111",
	"١4111111111111111", "4111111111111111١", "４１１１ １１１１ １１１１ １１１１", "x4111111111111111", "4111111111111111x",
	"411111111111", "4111 1111 1111 111", "5555555555554444", "5555 5555 5555 4444", "0000000000000", "1234 5678 9012 3456 789",
	concat(" ", ["4111" | some _ in numbers.range(1, 200)]),
]

# card_numbers without a regex (a string that is one chain) gives what the pattern gives.
pattern_card_numbers(value) := {digits |
	some chain in regex.find_n(data.warden.card_chain_pattern, value, -1)
	count(chain) >= 13
	groups := split(replace(chain, "-", " "), " ")
	some i in numbers.range(0, count(groups) - 1)
	some j in numbers.range(i, min([i + 18, count(groups) - 1]))
	digits := concat("", array.slice(groups, i, j + 1))
	count(digits) >= 13
	count(digits) <= 19
	trim(digits, "0123456789") == ""
}

test_card_candidates_are_those_of_the_pattern if {
	every value in card_texts {
		data.warden.card_numbers(value) == pattern_card_numbers(value)
	}
}

masked_card(value) := decide(call("support-bot", "ticket_read", {"n": value})).obligations.mask

test_card_shapes_are_masked_as_before if {
	every value in ["4111 1111 1111 1111", "4111111111111111", "4111 1111-1111 1111", "4222222222222", "6011000990139424009", "4111 1111 1111 1111 1111", "-4111111111111111", "4111111111111111-", "١4111111111111111"] {
		masked_card(value) == ["/action/args/n"]
	}
	every value in ["4111 1111 1111 1112", "12345678901234567001", "4111  1111 1111 1111", "4111 -1111 1111 1111", "x4111111111111111", "４１１１ １１１１ １１１１ １１１１", "4111 1111 1111 111"] {
		masked_card(value) == []
	}
}

test_a_card_as_a_number_or_in_nested_arguments_is_judged_as_before if {
	decide(call("support-bot", "ticket_read", {"n": 4111111111111111})).obligations.mask == []
	decide(call("support-bot", "ticket_read", {"a": [{"b": "4111 1111 1111 1111"}]})).obligations.mask == ["/action/args/a/0/b"]
	decide(call("support-bot", "ticket_read", {"4111 1111 1111 1111": 1})).obligations.mask == ["/action/args/4111 1111 1111 1111"]
}

test_flat_arguments_enter_the_first_level_only_and_nested_ones_every_level if {
	flat := call("support-bot", "ticket_read", {"n": "4111 1111 1111 1111", "m": 1})
	not data.warden.args_nested with input as flat with data.warden_registry as registry
	nested := call("support-bot", "ticket_read", {"n": [[["4111 1111 1111 1111"]]]})
	data.warden.args_nested with input as nested with data.warden_registry as registry
	decide(nested).obligations.mask == ["/action/args/n/0/0/0"]
	empty_collections := call("support-bot", "ticket_read", {"n": "4111 1111 1111 1111", "e": {}, "l": []})
	decide(empty_collections).obligations.mask == ["/action/args/n"]
}
