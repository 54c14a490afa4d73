# Network egress: tools the registry marks as network tools may reach only hosts that
# match the agent's allowlist of host globs ("*.example.com" matches one label).
package warden

import rego.v1

url_host_pattern := `^[hH][tT][tT][pP][sS]?://([^/?#@]*@)?([^/?#:\[\]]+)(:[0-9]+)?([/?#]|$)`

egress_host := lower(match[2]) if {
	is_string(args.url)
	some match in regex.find_all_string_submatch_n(url_host_pattern, args.url, 1)
}

egress_allowed(host) if {
	some pattern in object.get(agent, ["egress", "allow_hosts"], [])
	glob.match(lower(pattern), ["."], host)
}

# METADATA
# title: Network requests only to hosts on the agent's egress allowlist
# custom:
#   severity: high
#   controls: [eu_ai_act.art15(5), hipaa.164.312(e)(1), soc2.CC6.6, soc2.CC6.7]
deny contains {
	"rule": "egress-not-allowlisted",
	"message": sprintf("Host %s is not on the egress allowlist of agent %s", [egress_host, agent_id]),
	"controls": ["eu_ai_act.art15(5)", "hipaa.164.312(e)(1)", "soc2.CC6.6", "soc2.CC6.7"],
} if {
	tool_spec.category == "network"
	egress_host
	not egress_allowed(egress_host)
}

# METADATA
# title: Network requests need an http(s) URL with a host
# custom:
#   severity: high
#   controls: [eu_ai_act.art15(5), hipaa.164.312(e)(1), soc2.CC6.6]
deny contains {
	"rule": "egress-url-invalid",
	"message": "Network tools need args.url as an http or https URL with a host",
	"controls": ["eu_ai_act.art15(5)", "hipaa.164.312(e)(1)", "soc2.CC6.6"],
} if {
	tool_spec.category == "network"
	not egress_host
}
