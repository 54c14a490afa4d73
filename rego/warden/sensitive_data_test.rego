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
