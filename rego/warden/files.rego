# Destructive file operations on protected paths (the classic: no deletes under /prod/
# without a person's approval), and path tricks that would dodge the check.
#
# Every argument that names a file is judged (contract.rego lists the names), a path is
# compared with protected paths without regard to ASCII case, and paths must be
# canonical: absolute, printable ASCII, no ".", ".." or empty segments, no backslash.
package warden

import rego.v1

default protected_paths := ["/prod/"]

protected_paths := registry.protected_paths

# Tools that change or remove the file they name. A tool of category "file" that is not
# read-only counts as destructive too: writing truncates.
default destructive_file_tools := ["file_delete", "file_write", "file_move", "file_truncate", "file_append", "file_copy"]

destructive_file_tools := registry.destructive_file_tools

default read_only_file_tools := ["file_read", "file_list", "file_stat"]

read_only_file_tools := registry.read_only_file_tools

destructive_file_tool if tool in destructive_file_tools

destructive_file_tool if {
	tool_spec.category == "file"
	not tool in read_only_file_tools
}

# [argument name, path] for every path the action names.
action_path_values contains [name, value] if {
	judged_category == "file"
	some name, value in args # not args[name]: regorus binds an absent member and goes on
	name in file_argument_names
	is_string(value)
}

action_path_values contains [sprintf("paths/%d", [i]), value] if {
	judged_category == "file"
	is_array(args.paths)
	some i, value in args.paths
	is_string(value)
}

# Outside file tools, args.path is judged as a path too (as it always was).
action_path_values contains ["path", args.path] if {
	judged_category != "file"
	is_string(args.path)
}

action_paths contains value if some [_, value] in action_path_values

# A prefix "/prod/" protects "/prod" itself as well as everything below it; ASCII case is
# ignored (case-insensitive file systems), other characters are refused as not canonical.
under_protected_path(path) if {
	some prefix in protected_paths
	startswith(lower(path), lower(prefix))
}

under_protected_path(path) if {
	some prefix in protected_paths
	endswith(prefix, "/")
	lower(path) == lower(trim_suffix(prefix, "/"))
}

# METADATA
# title: Deleting or changing files under a protected path requires human approval
# custom:
#   severity: critical
#   controls: [eu_ai_act.art14(1), eu_ai_act.art14(4)(d), hipaa.164.308(a)(3)(ii)(A), soc2.CC5.1]
approval_required contains {
	"rule": "no-prod-deletes",
	"message": "Production file deletion requires human approval",
	"controls": ["eu_ai_act.art14(1)", "eu_ai_act.art14(4)(d)", "hipaa.164.308(a)(3)(ii)(A)", "soc2.CC5.1"],
} if {
	destructive_file_tool
	some path in action_paths
	path_text(path)
	under_protected_path(path)
}

# METADATA
# title: File paths must be absolute, printable ASCII and free of ., .. and empty segments
# description: Otherwise "/tmp/../prod/db", "/ｐｒｏｄ/db" or "\prod\db" would slip past the protected-path prefix check.
# custom:
#   severity: high
#   controls: [eu_ai_act.art15(5), hipaa.164.312(a)(1), soc2.CC6.1]
deny contains {
	"rule": "path-not-canonical",
	"message": sprintf("Path %s must be absolute, printable ASCII, without . or .. segments, // or backslashes", [shown(path)]),
	"controls": ["eu_ai_act.art15(5)", "hipaa.164.312(a)(1)", "soc2.CC6.1"],
} if {
	some path in action_paths
	not path_canonical(path)
}

# Printable ASCII, spaces allowed (lower() agrees across engines only on ASCII).
# For the paths of action_paths only (all of them judged strings: contract.rego).
path_text(p) if {
	p in printable_judged_strings
	p != ""
}

path_canonical(p) if {
	path_text(p)
	startswith(p, "/")
	not contains(p, "//")
	not contains(p, "\\")
	every segment in split(p, "/") {
		not segment in {".", ".."}
	}
}
