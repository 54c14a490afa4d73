# Destructive file operations on protected paths (the classic: no deletes under /prod/
# without a person's approval), and path tricks that would dodge the check.
package warden

import rego.v1

default protected_paths := ["/prod/"]

protected_paths := registry.protected_paths

default destructive_file_tools := ["file_delete"]

destructive_file_tools := registry.destructive_file_tools

action_path := args.path if is_string(args.path)

# A prefix "/prod/" protects "/prod" itself as well as everything below it.
under_protected_path if {
	some prefix in protected_paths
	startswith(action_path, prefix)
}

under_protected_path if {
	some prefix in protected_paths
	endswith(prefix, "/")
	action_path == trim_suffix(prefix, "/")
}

# METADATA
# title: Deleting files under a protected path requires human approval
# custom:
#   severity: critical
#   controls: [eu_ai_act.art14(1), eu_ai_act.art14(4)(d), hipaa.164.308(a)(3)(ii)(A), soc2.CC5.1]
approval_required contains {
	"rule": "no-prod-deletes",
	"message": "Production file deletion requires human approval",
	"controls": ["eu_ai_act.art14(1)", "eu_ai_act.art14(4)(d)", "hipaa.164.308(a)(3)(ii)(A)", "soc2.CC5.1"],
} if {
	tool in destructive_file_tools
	under_protected_path
}

# METADATA
# title: File paths must be absolute and free of . and .. segments
# description: Otherwise "/tmp/../prod/db" would slip past the protected-path prefix check.
# custom:
#   severity: high
#   controls: [eu_ai_act.art15(5), hipaa.164.312(a)(1), soc2.CC6.1]
deny contains {
	"rule": "path-not-canonical",
	"message": sprintf("Path %v must be absolute without . or .. segments", [action_path]),
	"controls": ["eu_ai_act.art15(5)", "hipaa.164.312(a)(1)", "soc2.CC6.1"],
} if {
	action_path
	not path_canonical(action_path)
}

path_canonical(p) if {
	startswith(p, "/")
	not contains(p, "//")
	every segment in split(p, "/") {
		not segment in {".", ".."}
	}
}
