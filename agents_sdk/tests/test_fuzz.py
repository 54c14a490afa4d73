"""Fuzzing the enforcement points with arbitrary JSON: no crash, never a bare 500.

Hypothesis generates JSON-like values with lone surrogates, NUL, control characters,
huge and non-finite numbers, deep nesting, non-string shell commands, and raw bytes that
are not JSON at all. The Guard runs them through the real Rego engine (policy library)
with a signer; the sidecar gets them over HTTP. Each property must hold for every example:

- the Guard returns a Decision; an input the engine cannot take is ``malformed-input``;
  the signed log still verifies at the end;
- the sidecar answers every request with JSON and a 2xx/4xx status, a decision (allow or a
  fail-closed deny) on the decision path, and is still healthy afterwards.

The example counts are fixed below (FUZZ_EXAMPLES) and each test asserts it ran them; the
MCP proxy is fuzzed the same way in agents_sdk/integrations/tests/test_mcp.py (it needs
the ``mcp`` package, so it runs in its nox session).
"""

from __future__ import annotations

import http.client
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents_sdk.guard import Decision, EmbeddedBackend, Guard
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from agents_sdk.sidecar import Sidecar
from agents_sdk.sidecar.config import parse_config
from agents_sdk.tests.signed_bundles import BundleServer, RSASigner, build_bundle, library_modules, registry
from agents_sdk.verify import verify_records

from .test_sidecar import opa_config

# Raise with WARDEN_FUZZ_EXAMPLES for a longer run.
FUZZ_EXAMPLES = int(os.environ.get("WARDEN_FUZZ_EXAMPLES", "1500"))

SURROGATES = st.sampled_from(["\ud800", "\udfff", "\ud83d", "a\udc80b", "\x00", "rm -rf /\x00", "\u202e", "\ufeff"])
TEXT = st.one_of(st.text(alphabet=st.characters(exclude_categories=()), max_size=40), SURROGATES)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 3, max_value=2**64 + 3),
    st.just(10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(float("inf")),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON_LIKE = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(TEXT, children, max_size=5)),
    max_leaves=30,
)


def nested(depth: int, leaf: object = "x") -> object:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


DEEP = st.builds(nested, st.integers(min_value=0, max_value=5000), SCALARS)
# json.dumps itself stops near 1000 levels; deeper documents are sent as raw brackets below.
DEEP_JSON = st.builds(nested, st.integers(min_value=0, max_value=900), SCALARS)
ARGS_JSON = st.dictionaries(TEXT, st.one_of(JSON_LIKE, DEEP_JSON), max_size=6)
ARGS = st.one_of(
    st.dictionaries(TEXT, st.one_of(JSON_LIKE, DEEP), max_size=6),
    # Shell commands that are not strings (the shell policy reads args.command).
    st.fixed_dictionaries({"command": st.one_of(JSON_LIKE, DEEP)}),
)
TOOLS = st.one_of(st.sampled_from(["ticket_read", "shell_exec", "file_delete", "http_get", "file_read"]), TEXT)
CONTEXT = st.dictionaries(st.sampled_from(["session_id", "approval_token", "on_behalf_of", "counters", "x"]), JSON_LIKE,
                          max_size=3)


@pytest.fixture(scope="module")
def support_bot() -> AgentIdentity:
    return AgentIdentity.create("support-bot", "alice@example.com", ["read:tickets", "write:files", "net:http", "exec:shell"])


@pytest.fixture(scope="module")
def backend() -> EmbeddedBackend:
    return EmbeddedBackend.from_modules(library_modules(), registry())


def test_the_guard_survives_arbitrary_json(support_bot, backend):
    signer = ActionSigner(support_bot)
    guard = Guard(support_bot, backend, environment="prod", signer=signer, session_id="fuzz")
    outcomes: dict[str, int] = {}

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(tool=TOOLS, args=ARGS, context=CONTEXT)
    def check(tool, args, context):
        decision = guard.check(tool, args, **context)
        assert isinstance(decision, Decision) and decision.effect in ("allow", "deny", "require_approval")
        key = decision.rule if decision.effect == "deny" else decision.effect
        outcomes[key or "deny"] = outcomes.get(key or "deny", 0) + 1

    check()
    runs = sum(outcomes.values())
    print(f"\nfuzz Guard.check: {runs} examples, outcomes {dict(sorted(outcomes.items()))}")
    assert runs >= FUZZ_EXAMPLES * 0.9
    assert outcomes.get("malformed-input", 0) > 0  # the hostile shapes were generated
    assert verify_records(signer.session_log(), {support_bot.key_id: support_bot.public_key_b64}).ok


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    signer = RSASigner("warden-test")
    with BundleServer() as server:
        server.state.publish(build_bundle(signer, revision="rev-1"))
        tmp = tmp_path_factory.mktemp("sidecar")
        config = opa_config(server, signer, tmp)
        config.pop("decision_logs")
        sidecar = Sidecar(parse_config(config), addr="127.0.0.1:0").start()
        assert sidecar.bundles.wait_until_ready(10)
        yield sidecar
        sidecar.stop()


def post(sidecar, path: str, body: bytes) -> tuple[int, object]:
    connection = http.client.HTTPConnection(*sidecar.address, timeout=10)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw)
    finally:
        connection.close()


def agent_input(tool, args, context):
    return {"agent": {"id": "support-bot", "name": "support-bot", "scopes": ["read:tickets"]},
            "action": {"type": "tool_call", "tool": tool, "args": args}, "context": context}


BODIES = st.one_of(
    # An agent's input with hostile arguments, as json.dumps writes it (\ud800 escapes).
    st.builds(lambda t, a, c: json.dumps({"input": agent_input(t, a, c)}, allow_nan=True).encode(), TOOLS, ARGS_JSON, CONTEXT),
    # Any JSON document as the input.
    st.builds(lambda v: json.dumps({"input": v}, allow_nan=True).encode(), st.one_of(JSON_LIKE, DEEP_JSON)),
    # Text that is barely JSON: very deep brackets, huge exponents, bad escapes, raw bytes.
    st.builds(lambda n: b'{"input": ' + b"[" * n + b"]" * n + b"}", st.integers(0, 200_000)),
    st.sampled_from([b'{"input": 1e400}', b'{"input": {"a": "\\ud800"}}', b'{"input": "\\u0000"}', b'{"input": -1e99999}',
                     b'{"input": ' + b"9" * 5000 + b"}", b'{"input": "\xed\xa0\x80"}', b"\xff\xfe", b"[1,2", b"null"]),
    st.binary(max_size=200),
)


def test_the_sidecar_survives_arbitrary_json_over_http(sidecar):
    statuses: dict[int, int] = {}

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                                     HealthCheck.function_scoped_fixture])
    @given(body=BODIES, path=st.sampled_from(["/v1/data/warden/decision", "/v1/data/warden", "/v1/data"]))
    def request(body, path):
        status, answer = post(sidecar, path, body)
        statuses[status] = statuses.get(status, 0) + 1
        assert isinstance(answer, dict)
        if path == "/v1/data/warden/decision":
            assert status in (200, 400), (status, answer)
        else:
            # OPA answers an evaluation error of a query with 500 internal_error; never a bare 500.
            assert status in (200, 400) or (status == 500 and answer["code"] == "internal_error"), (status, answer)
        if status == 200 and path == "/v1/data/warden/decision":
            # Always a decision the agent can act on: allow, or a deny saying why.
            assert answer["result"]["effect"] in ("allow", "deny", "require_approval")
        if status == 400:
            assert answer["code"] == "invalid_parameter" and answer["message"]

    request()
    runs = sum(statuses.values())
    print(f"\nfuzz sidecar HTTP: {runs} requests, statuses {dict(sorted(statuses.items()))}")
    assert runs >= FUZZ_EXAMPLES * 0.9
    connection = http.client.HTTPConnection(*sidecar.address, timeout=5)
    connection.request("GET", "/health")
    assert connection.getresponse().status == 200  # still alive and serving
