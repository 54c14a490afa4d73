package warden_test

import rego.v1

test_aws_key_in_args_is_denied if {
	denied_by(call("support-bot", "file_write", {"path": "/tmp/a", "content": "key=AKIAIOSFODNN7EXAMPLE"}), "secret-in-args")
}

test_private_key_in_nested_args_is_denied_and_masked if {
	d := decide(call("support-bot", "file_write", {"path": "/tmp/a", "files": [{"body": "-----BEGIN RSA PRIVATE KEY-----\nMIIE"}]}))
	d.effect == "deny"
	"secret-in-args" in rules_of(d)
	d.obligations.mask == ["/action/args/files/0/body"]
}

test_github_token_in_args_is_denied if {
	denied_by(call("support-bot", "http_request", {"url": "https://api.example.com/", "headers": {"Authorization": "token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"}}), "secret-in-args")
}

test_ordinary_text_is_not_a_secret if {
	d := decide(call("support-bot", "file_write", {"path": "/tmp/a", "content": "AKIA is how AWS key ids start"}))
	not "secret-in-args" in rules_of(d)
	d.allow
}

test_card_number_is_masked_not_denied if {
	d := decide(call("support-bot", "ticket_read", {"note": "card 4111 1111 1111 1111 exp 12/29", "id": 9}))
	d.allow
	d.obligations.mask == ["/action/args/note"]
}

test_card_number_with_dashes_in_nested_field_is_masked if {
	d := decide(call("support-bot", "ticket_read", {"customer": {"pay/ment": "5500-0000-0000-0004"}}))
	d.obligations.mask == ["/action/args/customer/pay~1ment"]
}

test_non_luhn_digit_run_is_not_masked if {
	d := decide(call("support-bot", "ticket_read", {"order": "4111 1111 1111 1112"}))
	d.obligations.mask == []
	d.allow
}

test_short_digit_run_is_not_masked if {
	d := decide(call("support-bot", "ticket_read", {"phone": "0049 30 1234"}))
	d.obligations.mask == []
}

test_luhn_check if {
	data.warden.luhn_valid("4111111111111111")
	data.warden.luhn_valid("378282246310005")
	not data.warden.luhn_valid("4111111111111112")
	not data.warden.luhn_valid("123456789012")
}

# {"k": {"k": ... leaf}} with n levels (built from text: deep literals are slow to parse).
nested(n, leaf) := json.unmarshal(concat("", [
	concat("", [`{"k": ` | some _ in numbers.range(1, n)]),
	json.marshal(leaf),
	concat("", ["}" | some _ in numbers.range(1, n)]),
]))

test_secret_nested_fifteen_levels_deep_is_found if {
	d := decide(call("support-bot", "file_write", {"path": "/tmp/a", "doc": nested(14, "AKIAIOSFODNN7EXAMPLE")}))
	d.effect == "deny"
	some r in d.reasons
	r.rule == "secret-in-args"
	r.message == "Argument /action/args/doc/k/k/k/k/k/k/k/k/k/k/k/k/k/k looks like a credential (AWS access key id); pass credentials through the secret store, not tool arguments"
}

test_card_in_array_of_arrays_is_masked if {
	d := decide(call("support-bot", "ticket_read", {"rows": [["x", ["4111 1111 1111 1111"]]]}))
	d.allow
	d.obligations.mask == ["/action/args/rows/0/1/0"]
}

test_sensitive_text_nested_deeper_than_scanned_is_refused if {
	d := decide(call("support-bot", "ticket_read", {"doc": nested(16, "4111 1111 1111 1111")}))
	d.effect == "deny"
	"args-too-deep" in rules_of(d)
}

test_deep_args_without_sensitive_text_are_not_refused if {
	allowed(call("support-bot", "ticket_read", {"doc": nested(30, "hello")}))
}

test_digits_in_numbers_alone_mask_nothing if {
	d := decide(call("support-bot", "ticket_read", {"n": 4111111111111111, "m": [4111111111111111]}))
	d.allow
	d.obligations.mask == []
}

test_credential_as_an_object_key_is_refused if {
	denied_by(call("support-bot", "ticket_read", {"AKIAIOSFODNN7EXAMPLE": 1}), "secret-in-args")
}

test_card_number_as_an_object_key_is_masked if {
	d := decide(call("support-bot", "ticket_read", {"4111111111111111": 1}))
	d.obligations.mask == ["/action/args/4111111111111111"]
}

test_luhn_check_odd_length if {
	data.warden.luhn_valid("4222222222222")
	not data.warden.luhn_valid("4222222222223")
	data.warden.luhn_valid("6011000990139424")
	data.warden.luhn_valid("4000056655665556")
	not data.warden.luhn_valid("40000566556655561234")
}

# Base64-encoded credentials (every alignment of the key in the encoded text), as a whole
# argument, inside text, and as a nested value; masked like a plain one.
test_base64_encoded_credentials_are_denied_and_masked if {
	some encoded in [
		"QUtJQUlPU0ZPRE5ON0VYQU1QTEU=",
		"YXdzX2FjY2Vzc19rZXlfaWQ9QUtJQUlPU0ZPRE5ON0VYQU1QTEU=",
		"Authorization: Basic Z2hwX2FCY0RlRmdIaUprTG1Ob1BxUnNUdVZ3WHlaMDEyMzQ1Njc4OQ== (ci)",
		"eG94Yi0xMjM0NTY3ODkwLWFiY2RlZg==",
	]
	d := decide(call("support-bot", "http_request", {"url": "https://api.example.com/", "headers": {"X-Auth": encoded}}))
	"secret-in-args" in rules_of(d)
	d.obligations.mask == ["/action/args/headers/X-Auth"]
}

# Ordinary base64, base64 of bytes that are not text (never decoded: regorus could not, OPA
# could), and base64 whose padding bits are set (regorus refuses it) decide as usual.
test_base64_that_is_not_a_credential_or_not_text_is_not_a_secret if {
	some encoded in [
		"aGVsbG8gd29ybGQsIHRoaXMgaXMgb3JkaW5hcnkgdGV4dA==",
		"yMnKy8zNzs/Q0dLT1NXW19jZ2tvc3d7f4OHi4+Tl5ufo6err",
		"QUtJQUlPU0ZPRE5ON0VYQU1QTEV=",
		"QUtJQUlPU0ZPRE5ON0VYQU1QTE",
	]
	d := decide(call("support-bot", "file_write", {"path": "/tmp/a", "content": encoded}))
	not "secret-in-args" in rules_of(d)
	d.allow
}

# base64url (with - and _), unpadded base64url, and base64 glued to the text in front of it
# (the run is decoded from each of its first four characters).
test_base64url_unpadded_and_glued_credentials_are_denied_and_masked if {
	some encoded in [
		"dG9rZW49Z2hwX2FCY0RlRmdIaUprTG1Ob1BxUnNUdVZ3WHlaMDEyMzQ1Njc4OT8-Pg==",
		"aWQ9QUtJQUlPU0ZPRE5ON0VYQU1QTEU",
		"xyzQUtJQUlPU0ZPRE5ON0VYQU1QTEU=",
		"jwt.eyJ0b2tlbiI6ICJnaHBfYUJjRGVGZ0hpSmtMbU5vUHFSc1R1VndYeVowMTIzNDU2Nzg5In0",
	]
	d := decide(call("support-bot", "ticket_read", {"note": encoded}))
	"secret-in-args" in rules_of(d)
	d.obligations.mask == ["/action/args/note"]
}

# The context is scanned for encoded credentials too, whatever escape precedes them.
test_base64_credentials_in_context_are_refused if {
	some note in [
		"az1za19saXZlX2FiY2RlZmdoaWprbG1ub3AxMjM0",
		"\naz1za19saXZlX2FiY2RlZmdoaWprbG1ub3AxMjM0",
		"<b>az1za19saXZlX2FiY2RlZmdoaWprbG1ub3AxMjM0",
		"é+dG9rZW49Z2hwX2FCY0RlRmdIaUprTG1Ob1BxUnNUdVZ3WHlaMDEyMzQ1Njc4OT8-Pg",
	]
	some extra in [{"note": note}, {"deep": [{"a": {"b": note}}]}]
	d := decide(with_context(call("support-bot", "ticket_read", {}), extra))
	"secret-in-context" in rules_of(d)
	d.effect == "deny"
}

test_ordinary_base64_in_context_is_not_a_secret if {
	d := decide(with_context(call("support-bot", "ticket_read", {}), {"note": "aGVsbG8gd29ybGQsIHRoaXMgaXMgb3JkaW5hcnkgdGV4dA=="}))
	d.allow
}

# Glued text whose base64 decodes to bytes that are not ASCII ("////") cannot hide the
# credential after it: decoding also starts where the marker places the secret's group.
test_base64_after_glued_non_ascii_base64_is_still_found if {
	some encoded in ["////QUtJQUlPU0ZPRE5ON0VYQU1QTEU=", "/////aWQ9QUtJQUlPU0ZPRE5ON0VYQU1QTEU", "+++++++az1za19saXZlX2FiY2RlZmdoaWprbG1ub3AxMjM0"]
	d := decide(call("support-bot", "ticket_read", {"note": encoded}))
	"secret-in-args" in rules_of(d)
}

# Every run of whole digit groups is a candidate, overlapping runs too: a Luhn-invalid
# number in front of a card (which once consumed the space before it), a CVV group after
# one, other numbers around it. Glued to letters or _, or after two separators, it is not.
test_card_next_to_other_digit_groups_is_masked if {
	every note in [
		"4111111111111112 4111111111111111", "x 4111111111111112-4111111111111111 y",
		"4111 1111 1111 1111 123", "99 4111 1111 1111 1111", "1234567890123 4111111111111111",
		"ab12 4111111111111111 cd", "٤4111111111111111٤",
	] {
		decide(call("support-bot", "ticket_read", {"note": note})).obligations.mask == ["/action/args/note"]
	}
	every note in ["a4111111111111112 4111111111111111b", "4111111111111111_", "4111  1111 1111 1111", "４１１１１１１１１１１１１１１１"] {
		decide(call("support-bot", "ticket_read", {"note": note})).obligations.mask == []
	}
}

test_card_numbers_are_every_group_aligned_run if {
	data.warden.card_numbers("4111 1111 1111 1111 123") == {"4111111111111111", "111111111111123", "4111111111111111123"}
	data.warden.card_numbers("4111111111111112 4111111111111111") == {"4111111111111112", "4111111111111111"}
	data.warden.card_numbers("a4111111111111111 4111111111111111b c") == set()
	data.warden.card_numbers("x4111 1111 1111 1111 1111") == {"1111111111111111"}
}
