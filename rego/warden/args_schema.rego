# Per-tool argument schemas (docs/rego-engine.md, "The input contract"): a catalog entry
# may carry `args_schema`, a JSON Schema for the tool's arguments in the subset checked
# here. Arguments that break it are denied with `malformed-args` naming the argument.
#
# The Guard and `warden sidecar` check the same schema in Python before evaluating
# (agents_sdk.engine.args_schema, same wording); the pack checks it itself so that a real
# OPA sidecar answers the same. The control plane refuses schemas outside the subset.
package warden

import rego.v1

arg_schema := spec if {
	spec := object.get(object.get(registry.tools, tool, {}), "args_schema", null)
	is_object(spec)
}

default arg_properties := {}

arg_properties := props if {
	props := object.get(arg_schema, "properties", {})
	is_object(props)
}

# The schema of argument `name`, for each argument the schema declares.
declared_args contains [name, value, spec] if {
	some name, value in args
	spec := object.get(arg_properties, name, null)
	is_object(spec)
}

schema_types(spec) := [spec.type] if is_string(spec.type)

# Only the strings of a list count (the control plane refuses others): concat never fails.
schema_types(spec) := [kind | some kind in spec.type; is_string(kind)] if is_array(spec.type)

schema_typed(spec, _) if object.get(spec, "type", null) == null

schema_typed(spec, value) if {
	some kind in schema_types(spec)
	schema_type_holds(kind, value)
}

schema_type_holds("string", value) if is_string(value)

schema_type_holds("number", value) if is_number(value)

schema_type_holds("integer", value) if {
	is_number(value)
	value == floor(value)
}

schema_type_holds("boolean", value) if is_boolean(value)

schema_type_holds("array", value) if is_array(value)

schema_type_holds("object", value) if is_object(value)

schema_type_holds("null", value) if is_null(value)

schema_args_violations contains [name, sprintf("of type %s", [concat(" or ", schema_types(spec))])] if {
	some [name, value, spec] in declared_args
	not schema_typed(spec, value)
}

schema_args_violations contains [name, sprintf("an array of %s items", [concat(" or ", schema_types(items))])] if {
	some [name, value, spec] in declared_args
	is_array(value)
	items := object.get(spec, "items", null)
	is_object(items)
	object.get(items, "type", null) != null
	some item in value
	not schema_typed(items, item)
}

schema_args_violations contains [name, "one of the values the tool's argument schema lists"] if {
	some [name, value, spec] in declared_args
	is_array(object.get(spec, "enum", null))
	not enum_holds(value, spec.enum)
}

# Only string values are compared (the control plane refuses other enum members).
enum_holds(value, values) if {
	is_string(value)
	some listed in values
	listed == value
}

schema_args_violations contains [name, sprintf("at most %d characters long", [spec.maxLength])] if {
	some [name, value, spec] in declared_args
	is_string(value)
	schema_limit(object.get(spec, "maxLength", null))
	count(value) > spec.maxLength
}

schema_args_violations contains [name, sprintf("at most %d items", [spec.maxItems])] if {
	some [name, value, spec] in declared_args
	is_array(value)
	schema_limit(object.get(spec, "maxItems", null))
	count(value) > spec.maxItems
}

# A whole number sprintf's %d writes alike in every engine (others are ignored; the
# control plane refuses them).
schema_limit(n) if {
	is_number(n)
	n >= 0
	n <= 2147483648
	n == floor(n)
}

schema_args_violations contains [name, "present: the tool's argument schema requires it"] if {
	required := object.get(arg_schema, "required", [])
	is_array(required)
	some name in required
	is_string(name)
	not arg_named(name)
}

schema_args_violations contains [name, "absent: the tool's argument schema does not declare it"] if {
	object.get(arg_schema, "additionalProperties", true) == false
	some name, _ in args
	not is_object(object.get(arg_properties, name, null))
}

arg_named(name) if {
	some key, _ in args
	key == name
}
