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
	is_string(entry)
	not contains(entry, " ")
	shell_program == entry
}

shell_allowed if {
	some entry in object.get(agent, ["shell", "allow_commands"], [])
	is_string(entry)
	contains(entry, " ")
	shell_command == entry
}

# %q only for strings: sprintf with %q on a number is an error in regorus.
quoted_command := sprintf("%q", [args.command]) if is_string(args.command) else := "(not a string)"

shell_metacharacters := [";", "&", "|", "`", "$(", ">", "<", "\n", "\r"]

# The two rules below (shell_deny) hold only for a shell tool, as each says; the compiled VM
# pays for every rule definition it enters, so other decisions enter this definition alone.
deny contains reason if {
	tool_spec.category == "shell"
	some reason in shell_deny
}

# METADATA
# title: Shell commands must be on the agent's allowlist
# custom:
#   severity: critical
#   controls: [eu_ai_act.art15(5), hipaa.164.312(a)(1), soc2.CC6.6, soc2.CC6.8]
shell_deny contains {
	"rule": "shell-not-allowlisted",
	"message": sprintf("Shell command %s is not on the allowlist of agent %s", [quoted_command, shown(object.get(request, ["agent", "id"], ""))]),
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
shell_deny contains {
	"rule": "shell-metacharacters",
	"message": sprintf("Shell command contains %v, which could run commands outside the allowlist", [meta]),
	"controls": ["eu_ai_act.art15(5)", "soc2.CC6.6", "soc2.CC6.8"],
} if {
	tool_spec.category == "shell"
	some meta in shell_metacharacters
	contains(shell_command, meta)
}

# The catalog marks code and shell tools that may run only in the sandbox
# ({"sandbox": {"required": true}}); agents_sdk.sandbox sets context.sandboxed on the calls
# it runs under bubblewrap, so any other way of calling the tool is denied.
tool_requires_sandbox if object.get(tool_spec, ["sandbox", "required"], false) == true

call_is_sandboxed if object.get(request, ["context", "sandboxed"], false) == true

# METADATA
# title: Tools the catalog marks sandboxed run only in the sandbox
# custom:
#   severity: critical
#   controls: [eu_ai_act.art15(4), eu_ai_act.art15(5), soc2.CC6.8]
deny contains {
	"rule": "sandbox-required",
	"message": sprintf("Tool %s must run in the sandbox (profile: %s); this call was not sandboxed", [tool, sandbox_profile_name]),
	"controls": ["eu_ai_act.art15(4)", "eu_ai_act.art15(5)", "soc2.CC6.8"],
} if {
	tool_requires_sandbox
	not call_is_sandboxed
}

sandbox_profile_name := "the tool's own" if {
	is_object(object.get(tool_spec, ["sandbox", "profile"], null))
} else := "the agent's registry profile"
