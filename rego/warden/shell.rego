# Shell commands are denied by default. Each agent's allowlist names programs (an
# entry without spaces: that program with any arguments) or exact commands (an entry
# with spaces). Chaining, pipes, redirection and substitution are never allowed,
# since they would run programs the allowlist does not name.
package warden

import rego.v1

shell_command := trim_space(args.command) if is_string(args.command)

shell_program := split(shell_command, " ")[0]

shell_allowed if {
	some entry in object.get(agent, ["shell", "allow_commands"], [])
	not contains(entry, " ")
	shell_program == entry
}

shell_allowed if {
	some entry in object.get(agent, ["shell", "allow_commands"], [])
	contains(entry, " ")
	shell_command == entry
}

shell_metacharacters := [";", "&", "|", "`", "$(", ">", "<", "\n", "\r"]

# METADATA
# title: Shell commands must be on the agent's allowlist
# custom:
#   severity: critical
#   controls: [eu_ai_act.art15(5), hipaa.164.312(a)(1), soc2.CC6.6, soc2.CC6.8]
deny contains {
	"rule": "shell-not-allowlisted",
	"message": sprintf("Shell command %q is not on the allowlist of agent %s", [object.get(args, "command", ""), agent_id]),
	"controls": ["eu_ai_act.art15(5)", "hipaa.164.312(a)(1)", "soc2.CC6.6", "soc2.CC6.8"],
} if {
	tool_spec.category == "shell"
	not shell_allowed
}

# METADATA
# title: Shell commands may not chain, pipe, redirect or substitute
# custom:
#   severity: critical
#   controls: [eu_ai_act.art15(5), soc2.CC6.6, soc2.CC6.8]
deny contains {
	"rule": "shell-metacharacters",
	"message": sprintf("Shell command contains %q, which could run commands outside the allowlist", [meta]),
	"controls": ["eu_ai_act.art15(5)", "soc2.CC6.6", "soc2.CC6.8"],
} if {
	tool_spec.category == "shell"
	some meta in shell_metacharacters
	contains(shell_command, meta)
}
