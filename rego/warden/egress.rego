# Network egress: tools the registry marks as network tools may reach only hosts that
# match the agent's allowlist of host globs ("*.example.com" matches one label).
#
# The host judged must be the host the HTTP client connects to. URLs that parsers read
# differently (WHATWG and urllib3 treat "\" as "/", userinfo hides the host, IPv4 has
# decimal, octal and hex spellings, Unicode hosts lowercase and map to punycode
# differently) are refused as ambiguous rather than guessed at.
package warden

import rego.v1

# [argument name, URL] for every URL the action names (contract.rego lists the names).
url_values contains [name, value] if {
	judged_category == "network"
	some name, value in args # not args[name]: regorus binds an absent member and goes on
	name in url_argument_names
	is_string(value)
}

url_values contains [sprintf("urls/%d", [i]), value] if {
	judged_category == "network"
	is_array(args.urls)
	some i, value in args.urls
	is_string(value)
}

# Each URL the action names is parsed once per decision, in rules (whose values the engine
# keeps) rather than in functions (which it evaluates at every call): the rules below ask
# for the same URL's authority and host several times.
# printable_ascii(url), from the judged strings' one check (every URL is one: contract.rego).
printable_urls contains url if {
	some [_, url] in url_values
	url in printable_judged_strings
	url != ""
	not contains(url, " ")
}

# A URL is scheme :// authority, then path, query or fragment (or nothing): as the regex
# ^[hH][tT][tT][pP][sS]?://([^/?#]*)([/?#].*)?$ reads a printable URL, without building one
# (regorus builds a regex at every call, ~50 k VM instructions; these builtins cost a few k).
# The authority is what comes before the first "/", "?" or "#" after the scheme.
url_authorities[url] := authority if {
	some url in printable_urls
	rest := url_after_scheme(url)
	authority := split(split(split(rest, "/")[0], "?")[0], "#")[0]
	is_string(authority) # a later use: see agents_sdk/engine/vm_safety.py
}

# The URL after http:// or https://, in any ASCII case (a printable URL is ASCII: lower and
# substring count the same characters in every engine).
url_after_scheme(url) := substring(url, 7, -1) if lower(substring(url, 0, 7)) == "http://"

url_after_scheme(url) := substring(url, 8, -1) if lower(substring(url, 0, 8)) == "https://"

# The host, then an optional port: as ^([^:@\[\]]+)(:[0-9]{1,5})?$ reads an authority.
url_hosts[url] := lower(host) if {
	some url, authority in url_authorities
	parts := split(authority, ":")
	host := parts[0]
	host != ""
	not contains_any(host, ["@", "[", "]"])
	url_port_valid(parts)
}

# [host] or [host, port]: a port is 1 to 5 ASCII digits.
url_port_valid(parts) if count(parts) == 1

url_port_valid(parts) if {
	count(parts) == 2
	port := parts[1]
	port != ""
	count(port) <= 5
	trim(port, "0123456789") == ""
}

# For the URLs of url_values only (looked up by iterating: see contract.rego on indexing).
url_authority(url) := authority if {
	some candidate, authority in url_authorities
	candidate == url
}

url_host(url) := host if {
	some candidate, host in url_hosts
	candidate == url
}

# contains/startswith/endswith where a regex would say the same: each regex call is
# compiled anew, the string builtins cost a fraction of that.
url_ambiguity(url) := "characters outside printable ASCII (control characters, spaces, Unicode)" if {
	not url in printable_urls
} else := "a backslash, which clients read as a path separator" if {
	contains(url, "\\")
} else := "userinfo (@) or percent-encoding in the host" if {
	authority := url_authority(url)
	contains_any(authority, ["@", "%"])
} else := "a host with an empty label or a trailing dot" if {
	host := url_host(url)
	empty_label(host)
} else := "an IPv4 address not written as four decimal octets" if {
	host := url_host(url)
	labels := split(host, ".")
	last := labels[count(labels) - 1]
	contains_any(substring(last, 0, 1), ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"])
	regex.match(`^(0[xX][0-9a-fA-F]*|[0-9]+)$`, last)
	not canonical_ipv4(host)
}

contains_any(text, parts) if {
	some part in parts
	contains(text, part)
}

empty_label(host) if startswith(host, ".")

empty_label(host) if contains(host, "..")

empty_label(host) if endswith(host, ".")

canonical_ipv4(host) if regex.match(`^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$`, host)

# The rules below (egress_deny) can hold only for a network tool: each needs url_values, or
# judged_category == "network" itself. The compiled VM pays for every rule definition it
# enters, so other decisions enter this definition alone; each rule keeps its own conditions.
deny contains reason if {
	judged_category == "network"
	some reason in egress_deny
}

egress_allowed(host) if {
	some pattern in object.get(agent, ["egress", "allow_hosts"], [])
	is_string(pattern)
	glob.match(lower(pattern), ["."], host)
}

# METADATA
# title: URLs that clients may parse to another host are refused
# custom:
#   severity: critical
#   controls: [eu_ai_act.art15(5), hipaa.164.312(e)(1), soc2.CC6.6, soc2.CC6.7]
egress_deny contains {
	"rule": "ambiguous-url",
	"message": sprintf("URL in args.%s has %s; write the host plainly", [name, ambiguity]),
	"controls": ["eu_ai_act.art15(5)", "hipaa.164.312(e)(1)", "soc2.CC6.6", "soc2.CC6.7"],
} if {
	some [name, url] in url_values
	ambiguity := url_ambiguity(url)
	is_string(ambiguity) # undefined when the URL is plain; see agents_sdk/engine/vm_safety.py
}

# METADATA
# title: Network requests only to hosts on the agent's egress allowlist
# custom:
#   severity: high
#   controls: [eu_ai_act.art15(5), hipaa.164.312(e)(1), soc2.CC6.6, soc2.CC6.7]
egress_deny contains {
	"rule": "egress-not-allowlisted",
	"message": sprintf("Host %s is not on the egress allowlist of agent %s", [host, agent_id]),
	"controls": ["eu_ai_act.art15(5)", "hipaa.164.312(e)(1)", "soc2.CC6.6", "soc2.CC6.7"],
} if {
	some [_, url] in url_values
	host := url_host(url)
	not egress_allowed(host)
}

# METADATA
# title: Network requests need an http(s) URL with a host
# custom:
#   severity: high
#   controls: [eu_ai_act.art15(5), hipaa.164.312(e)(1), soc2.CC6.6]
egress_deny contains {
	"rule": "egress-url-invalid",
	"message": sprintf("Network tools need args.%s as an http or https URL with a host", [name]),
	"controls": ["eu_ai_act.art15(5)", "hipaa.164.312(e)(1)", "soc2.CC6.6"],
} if {
	some [name, url] in url_values
	url in printable_urls
	not url_host(url)
}

egress_deny contains {
	"rule": "egress-url-invalid",
	"message": "Network tools need args.url as an http or https URL with a host",
	"controls": ["eu_ai_act.art15(5)", "hipaa.164.312(e)(1)", "soc2.CC6.6"],
} if {
	judged_category == "network"
	count(url_values) == 0
}
