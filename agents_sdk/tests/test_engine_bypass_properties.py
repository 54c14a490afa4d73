"""Property tests per deny and approval rule: equivalent spellings of a refused or held
action (encodings, types, case, Unicode, separators, argument names) are never allowed.

Each test draws spellings of one action the pack must not allow and asserts the decision
is not `allow`; the decision comes from the same engine path enforcement points use.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents_sdk.engine import RegoEngine, load_modules
from agents_sdk.engine.corpus import DATA
from agents_sdk.tests.conftest import REPO_ROOT

PACK = {
    path: source
    for path, source in load_modules(REPO_ROOT / "rego", relative_to=REPO_ROOT).items()
    if not path.endswith("_test.rego")
}
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def policy():
    return RegoEngine().compile(PACK, DATA)


def call(tool, args, agent="support-bot", **context):
    return {
        "agent": {"id": agent, "name": agent, "owner": "alice@example.com"},
        "action": {"type": "tool_call", "tool": tool, "args": args},
        "context": {"session_id": "s-1", "environment": "prod", "time": "2026-01-01T00:00:00Z", **context},
    }


def case_mix(text: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(text), max_size=len(text)).map(
        lambda flips: "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))
    )


UNICODE_NOISE = st.sampled_from(["", "\u200b", "\ufeff", "\u0301", "İ", "ﬁ", "\x00", "\t", "\r\n", "\u202e", "٣"])


def wrapped(value_strategy):
    """A value as one string, a one- or two-element list, or an object around it."""
    return st.one_of(
        value_strategy,
        value_strategy.map(lambda v: [v]),
        value_strategy.map(lambda v: ["/tmp/ok", v]),
        value_strategy.map(lambda v: {"value": v}),
    )


def assert_not_allowed(policy, request):
    decision = policy.decide(request)
    assert decision["effect"] != "allow", (request, decision)


@PROPERTY
@given(
    name=st.sampled_from(["path", "file", "filename", "file_path", "target", "dest", "destination", "src", "source", "new_path", "paths", "Path", "PATH"]),
    prod=case_mix("prod"),
    noise=UNICODE_NOISE,
    tail=st.sampled_from(["x", "db/orders.sqlite", "", "./x", "../prod/x"]),
    tool=st.sampled_from(["file_delete", "file_write"]),
)
def test_no_prod_deletes_has_no_spelling_that_is_allowed(policy, name, prod, noise, tail, tool):
    path = f"/{prod}{noise}/{tail}" if tail else f"/{prod}{noise}"
    value = [path] if name == "paths" else path
    assert_not_allowed(policy, call(tool, {name: value}))
    assert_not_allowed(policy, call(tool, {name: [value]}))


@PROPERTY
@given(
    name=st.sampled_from(["branch", "refspec", "ref", "remote_ref", "target_branch", "branches", "refspecs", "Branch"]),
    branch=st.one_of(case_mix("main"), st.sampled_from(["release/1.0", "release/2.0/hotfix", "RELEASE/x"])),
    prefix=st.sampled_from(["", "+", "HEAD:", "+HEAD:", "refs/heads/", "HEAD:refs/heads/", ":", "feature/x:", "+feature:refs/heads/"]),
    noise=UNICODE_NOISE,
    shape=st.sampled_from(["string", "list", "object"]),
)
def test_protected_branch_push_has_no_spelling_that_is_allowed(policy, name, branch, prefix, noise, shape):
    ref = f"{prefix}{branch}{noise}"
    value = {"string": ref, "list": ["feature/y", ref], "object": {"name": ref}}[shape]
    assert_not_allowed(policy, call("git_push", {name: value}))


EXTERNAL = st.sampled_from(["x@evil.com", "X@EVIL.COM", "x@example.com.evil.com", "x@evilexample.com", "x@sub.example.com"])


@PROPERTY
@given(
    field=st.sampled_from(["to", "cc", "bcc", "reply_to", "recipients", "To"]),
    external=EXTERNAL,
    separator=st.sampled_from([", ", ",", ";", " ; ", "\r\nBcc: ", "\n"]),
    display=st.sampled_from(["{a}", "Mallory <{a}>", '"bob@example.com" <{a}>', "<{a}>", "{a} (bob@example.com)"]),
    shape=st.sampled_from(["joined", "list", "objects"]),
    noise=UNICODE_NOISE,
)
def test_external_email_has_no_spelling_that_is_allowed(policy, field, external, separator, display, shape, noise):
    mailbox = display.format(a=external) + noise
    value = {
        "joined": f"bob@example.com{separator}{mailbox}",
        "list": ["bob@example.com", mailbox],
        "objects": [{"email": mailbox}],
    }[shape]
    args = {"to": "bob@example.com", field: value} if field != "to" else {"to": value}
    assert_not_allowed(policy, call("email_send", args))


LOOPBACK = st.sampled_from(["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "127.0.0.1", "localhost", "[::1]", "0", "017700000001"])


@PROPERTY
@given(
    host=st.one_of(LOOPBACK, st.sampled_from(["evil.com", "EVIL.COM", "example.com.evil.com", "evilexample.com", "example.com"])),
    shape=st.sampled_from(
        ["http://{h}/x", "https://api.example.com@{h}/", "http://{h}\\@api.example.com/x", "http://{h}\\.example.com/",
         "https://{h}#.example.com", "https://{h}:443/", "HTTP://{h}", "https://{h}%2f@api.example.com/", "//{h}/x"]
    ),
    name=st.sampled_from(["url", "uri", "endpoint", "href", "link", "base_url", "urls", "URL"]),
    noise=UNICODE_NOISE,
)
def test_egress_has_no_spelling_that_reaches_an_unlisted_host(policy, host, shape, name, noise):
    url = shape.replace("{h}", host) + noise
    value = [url] if name == "urls" else url
    assert_not_allowed(policy, call("http_request", {name: value}))
    assert_not_allowed(policy, call("http_request", {"url": "https://api.example.com/", name: value}))


SECRETS = st.sampled_from(["AKIAABCDEFGHIJKLMNOP", "ghp_" + "a" * 36, "xoxb-1234567890-abc", "sk_live_" + "a" * 20, "AIza" + "b" * 35])


@PROPERTY
@given(
    secret=SECRETS,
    before=st.sampled_from(["", " ", "é", "٣", "=", "\n", "token:", "ü"]),
    after=st.sampled_from(["", " ", "é", "٣", ".", "\n", "ß"]),
    where=st.sampled_from(["value", "key", "nested", "context"]),
    depth=st.integers(min_value=0, max_value=20),
)
def test_secret_in_args_has_no_spelling_that_is_allowed(policy, secret, before, after, where, depth):
    text = f"{before}{secret}{after}"
    nested: object = text
    for _ in range(depth):
        nested = [nested]
    if where == "context":
        request = call("ticket_read", {}, note=nested)
    else:
        args = {"value": {"note": text}, "key": {text: 1}, "nested": {"deep": nested}}[where]
        request = call("ticket_read", args)
    assert_not_allowed(policy, request)


@PROPERTY
@given(
    command=st.sampled_from(["rm -rf /", "ls; rm -rf /", "ls | sh", "ls && id", "ls $(id)", "ls `id`", "ls > /etc/x", "ls\nid", "ls\x00; id", "LS", "git status --exec=x"]),
    name=st.sampled_from(["command", "cmd", "script", "Command"]),
    shape=st.sampled_from(["string", "list"]),
)
def test_shell_has_no_spelling_that_runs_an_unlisted_command(policy, command, name, shape):
    value = command if shape == "string" else [command]
    assert_not_allowed(policy, call("shell", {name: value}))
    if name != "command":
        assert_not_allowed(policy, call("shell", {"command": "ls", name: value}))


@PROPERTY
@given(
    delegators=st.sampled_from(
        [["paused-orchestrator"], "paused-orchestrator", ["orchestrator", "paused-orchestrator"], ["ghost"], [1], {"id": "x"}, "orchestrator"]
    )
)
def test_delegation_to_an_inactive_agent_has_no_spelling_that_is_allowed(policy, delegators):
    assert_not_allowed(policy, call("ticket_read", {}, on_behalf_of=delegators))


@PROPERTY
@given(
    agent=st.sampled_from(["suspended-bot", "revoked-bot", "ghost-bot", "SUPPORT-BOT", "support-bot\x00", " support-bot", 7, None, ["support-bot"]]),
    tool=st.sampled_from(["ticket_read", "TICKET_READ", "ticket_read\x00", "unknown", 1, ["ticket_read"]]),
)
def test_unknown_or_inactive_identities_are_never_allowed(policy, agent, tool):
    if agent == "support-bot" and tool == "ticket_read":
        return
    assert_not_allowed(policy, call(tool, {}, agent=agent))


@PROPERTY
@given(
    used=st.one_of(st.integers(min_value=60, max_value=2**70), st.floats(min_value=59.5, allow_nan=False), st.sampled_from(["999", [61], None])),
)
def test_rate_limits_have_no_spelling_that_is_allowed(policy, used):
    assert_not_allowed(policy, call("ticket_read", {}, counters={"agent": {"calls_per_minute": used}}))


@PROPERTY
@given(
    tool=st.sampled_from(["payment_create", "db_drop_table"]),
    args=st.dictionaries(st.text(max_size=5), st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)), max_size=3),
)
def test_irreversible_and_payment_tools_are_never_allowed_without_approval(policy, tool, args):
    assert_not_allowed(policy, call(tool, args))
