"""The pack's checks made with string builtins instead of a regex built at every
call agree with the regex they replace, on generated text (rego/warden/regex_free_test.rego
holds the hand-picked hostile shapes and runs under real OPA too)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents_sdk.engine import RegoEngine, load_modules
from agents_sdk.engine.corpus import DATA
from agents_sdk.tests.conftest import REPO_ROOT

PACK = {k: v for k, v in load_modules(REPO_ROOT / "rego", relative_to=REPO_ROOT).items() if not k.endswith("_test.rego")}

# Each check beside the regex it replaces, for one input string (input.s) or URL.
PROBE = r"""package probe

import rego.v1

printable_ascii := true if data.warden.printable_ascii(input.s) else := false

printable_text := true if data.warden.printable_text(input.s) else := false

lowercase_name := true if data.warden.lowercase_name(input.s) else := false

checks := {
	"printable_ascii": [printable_ascii, regex.match(`^[\x21-\x7e]+$`, input.s)],
	"printable_text": [printable_text, regex.match(`^[\x20-\x7e]*$`, input.s)],
	"lowercase_name": [lowercase_name, regex.match(`^[a-z0-9_]+$`, input.s)],
	"cards": [data.warden.card_numbers(input.s), pattern_card_numbers],
}

pattern_card_numbers := {digits |
	some chain in regex.find_n(data.warden.card_chain_pattern, input.s, -1)
	count(chain) >= 13
	groups := split(replace(chain, "-", " "), " ")
	some i in numbers.range(0, count(groups) - 1)
	some j in numbers.range(i, min([i + 18, count(groups) - 1]))
	digits := concat("", array.slice(groups, i, j + 1))
	count(digits) >= 13
	count(digits) <= 19
	trim(digits, "0123456789") == ""
}

url := input.action.args.url

authority := object.get(data.warden.url_authorities, url, null)

host := object.get(data.warden.url_hosts, url, null)

regex_authority := m[1] if {
	regex.match(`^[\x21-\x7e]+$`, url)
	some m in regex.find_all_string_submatch_n(`^[hH][tT][tT][pP][sS]?://([^/?#]*)([/?#].*)?$`, url, 1)
} else := null

regex_host := lower(m[1]) if {
	is_string(regex_authority)
	some m in regex.find_all_string_submatch_n(`^([^:@\[\]]+)(:[0-9]{1,5})?$`, regex_authority, 1)
} else := null

"""


@pytest.fixture(scope="module")
def probe():
    return RegoEngine("regorus").compile(PACK | {"probe.rego": PROBE}, DATA)


# Text near what each check looks for: digits, separators, letters, printable punctuation,
# control characters, DEL, Unicode digits and letters, spaces of other kinds.
TEXT = st.text(
    alphabet=st.sampled_from(list("0123456789 -- 41aZ_.:/?#@[]%~!\"\\") + ["\x00", "\t", "\n", "\x7f", "é", "٤", "４", "\u00a0", "\u2028"]),
    max_size=40,
)
CARDISH = st.lists(st.sampled_from(["4111", "1111", "4", "12", " ", "-", "  ", "x", "١", "\n"]), max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(TEXT, CARDISH))
def test_string_checks_agree_with_their_regexes(probe, text):
    for name, (check, pattern) in probe.evaluate("data.probe.checks", {"s": text}).items():
        assert check == pattern, (name, text)


URL = st.tuples(
    st.sampled_from(["http://", "https://", "HTTPS://", "hTtP://", "ftp://", "https:/", "", "https://https://"]),
    st.text(alphabet=st.sampled_from(list("abz09.-:@[]%/?#\\ ") + ["é", "\t"]), max_size=24),
).map("".join)


@settings(max_examples=300, deadline=None)
@given(URL)
def test_urls_are_parsed_as_the_regexes_read_them(probe, url):
    request = {
        "agent": {"id": "support-bot"},
        "action": {"tool": "http_request", "args": {"url": url}},
        "context": {},
    }
    ours = [probe.evaluate(f"data.probe.{name}", request) for name in ("authority", "host")]
    theirs = [probe.evaluate(f"data.probe.{name}", request) for name in ("regex_authority", "regex_host")]
    assert ours == theirs, url
