package warden_test

import rego.v1

malformed_args_fields(request) := {field |
	some reason in decide(request).reasons
	reason.rule == "malformed-args"
	field := trim_prefix(split(reason.message, " ")[1], "args.")
}

test_arguments_that_follow_the_tool_schema_are_allowed if {
	allowed(call("support-bot", "ticket_update", {"id": 7}))
	allowed(call("support-bot", "ticket_update", {"id": 7.0, "status": "open", "labels": ["a", "b"], "note": null}))
	allowed(call("support-bot", "ticket_update", {"id": 7, "note": "twenty characters..."}))
}

# Hostile shapes: another type, a list where one value is expected, a number as a string,
# a boolean or fraction as an integer, objects and nulls, members outside the enum or the
# schema, too long or too many, a required argument missing. Each names its argument.
test_arguments_outside_the_tool_schema_are_refused_naming_the_argument if {
	cases := [
		[{"id": "7"}, "id"],
		[{"id": [7]}, "id"],
		[{"id": 7.5}, "id"],
		[{"id": true}, "id"],
		[{"id": null}, "id"],
		[{"id": {"$gt": 0}}, "id"],
		[{"id": 7, "status": "OPEN"}, "status"],
		[{"id": 7, "status": ["open"]}, "status"],
		[{"id": 7, "status": 1}, "status"],
		[{"id": 7, "labels": "a"}, "labels"],
		[{"id": 7, "labels": ["a", 1]}, "labels"],
		[{"id": 7, "labels": ["a", "b", "c", "d"]}, "labels"],
		[{"id": 7, "note": "twenty-one characters"}, "note"],
		[{"id": 7, "note": 1}, "note"],
		[{"id": 7, "Id": 8}, "Id"],
		[{"id": 7, "ｉｄ": 8}, "ｉｄ"],
		[{"id": 7, "path": "/prod/x"}, "path"],
		[{"status": "open"}, "id"],
		[{}, "id"],
	]
	every case in cases {
		decide(call("support-bot", "ticket_update", case[0])).effect == "deny"
		malformed_args_fields(call("support-bot", "ticket_update", case[0])) == {case[1]}
	}
}

test_schema_reasons_are_worded_for_the_reader if {
	d := decide(call("support-bot", "ticket_update", {"id": "7", "labels": ["a", 1]}))
	{r.message | some r in d.reasons; r.rule == "malformed-args"} == {
		"Argument args.id of tool ticket_update must be of type integer",
		"Argument args.labels of tool ticket_update must be an array of string items",
	}
}

# A schema the pack cannot read in part (as a hand-built bundle might carry) is applied as
# far as it can be, never failing a rule: a type list with a number, a fractional limit.
test_schema_parts_that_cannot_be_read_never_make_a_rule_fail if {
	tools := object.union(registry.tools, {"odd": {"scopes": ["read:tickets"], "args_schema": {
		"properties": {"a": {"type": ["string", 1], "maxLength": 2.5, "enum": ["x", 1]}, "b": "string"},
		"required": ["a", 3],
	}}})
	d := data.warden.decision with input as call("support-bot", "odd", {"a": 1}) with data.warden_registry as object.union(registry, {"tools": tools})
	d.effect == "deny"
	{r.message | some r in d.reasons; r.rule == "malformed-args"} == {
		"Argument args.a of tool odd must be of type string",
		"Argument args.a of tool odd must be one of the values the tool's argument schema lists",
	}
}
