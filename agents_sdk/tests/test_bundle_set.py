"""Several bundles with disjoint roots (Warden's split layout: policy + registry), and the
canonical-JSON fast path the verifier takes for large data.json files."""

from __future__ import annotations

import json
import time

import pytest

from agents_sdk.bundles import BundleClient, VerificationConfig, VerificationKey
from agents_sdk.bundles.archive import parse_bundle
from agents_sdk.bundles.format import (
    BundleError,
    _canonical,
    _NumberLiteral,
    _reject_constant,
    canonical_file_bytes,
    canonical_json,
)
from agents_sdk.bundles.multi import BundleSet, merge_bundles
from agents_sdk.guard.backends import EmbeddedBackend
from agents_sdk.tests.signed_bundles import BundleServer, RSASigner, build_bundle, registry

SIGNER = RSASigner("split-key")
VERIFY = VerificationConfig(keys={"split-key": VerificationKey.from_pem("split-key", SIGNER.public_pem)}, keyid="split-key")


def _request(agent: str) -> dict:
    return {
        "agent": {"id": agent, "name": agent, "owner": "alice@example.com", "scopes": ["read:tickets"]},
        "action": {"type": "tool_call", "tool": "ticket_read", "args": {"id": 7}},
        "context": {"session_id": "s-1", "environment": "prod", "time": "2026-01-01T00:00:00Z"},
    }


def _rules(decision: dict) -> set[str]:
    return {reason["rule"] for reason in decision.get("reasons", [])}


def _policy(revision="p1", **kw):
    return build_bundle(SIGNER, data={}, roots=("warden",), revision=revision, **kw)


def _registry(revision="r1", roots=("warden_registry",), **status):
    return build_bundle(SIGNER, modules={}, data=registry(**status), roots=roots, revision=revision)


def _client(server: BundleServer, name: str) -> BundleClient:
    return BundleClient(server.url, f"bundles/prod/{name}", name=f"prod-{name}", token="env-token",
                        verification=VERIFY, long_polling_timeout=2)


def test_a_suspension_in_the_registry_bundle_reaches_decisions_and_the_policy_bundle_stays():
    with BundleServer() as policy_server, BundleServer() as registry_server:
        policy_server.state.publish(_policy())
        registry_server.state.publish(_registry(**{"ops-bot": "active"}))
        bundles = BundleSet([_client(policy_server, "policy"), _client(registry_server, "registry")])
        backend = EmbeddedBackend(bundles)
        try:
            assert backend.wait_until_ready(20)
            assert "agent-not-active" not in _rules(backend.decide(_request("ops-bot"))[0])
            policy_requests = len(policy_server.state.requests)
            registry_server.state.publish(_registry("r2", **{"ops-bot": "suspended"}))
            deadline = time.monotonic() + 20
            while "agent-not-active" not in _rules(backend.decide(_request("ops-bot"))[0]):
                assert time.monotonic() < deadline, "the suspension never reached the decisions"
                time.sleep(0.02)
            assert backend.revision == "p1+r2"
            # The policy bundle was not downloaded again: its polls only got 304s (or are held).
            assert bundles.clients[0].active.revision == "p1"
            assert len(policy_server.state.requests) - policy_requests <= 2
        finally:
            backend.close()


def test_a_registry_bundle_replaces_the_data_without_recompiling_the_policy():
    with BundleServer() as policy_server, BundleServer() as registry_server:
        policy_server.state.publish(_policy())
        registry_server.state.publish(_registry(**{"ops-bot": "active"}))
        bundles = BundleSet([_client(policy_server, "policy"), _client(registry_server, "registry")])
        backend = EmbeddedBackend(bundles, start=False)
        compiled: list[dict] = []
        compile_modules = backend.engine.compile

        def counting_compile(modules, data=None, **options):
            compiled.append(modules)
            return compile_modules(modules, data, **options)

        backend.engine.compile = counting_compile  # type: ignore[method-assign]
        bundles.start()
        try:
            assert backend.wait_until_ready(20)
            policy = backend.policy
            assert len(compiled) == 1 and "agent-not-active" not in _rules(backend.decide(_request("ops-bot"))[0])
            registry_server.state.publish(_registry("r2", **{"ops-bot": "suspended"}))
            deadline = time.monotonic() + 20
            while backend.revision != "p1+r2":
                assert time.monotonic() < deadline, "the registry bundle was never activated"
                time.sleep(0.02)
            # The new data is in force at once, in the same compiled policy: no recompile.
            assert "agent-not-active" in _rules(backend.decide(_request("ops-bot"))[0])
            assert backend.policy is policy and len(compiled) == 1
            assert backend.data is not None and backend.data["warden_registry"]["agents"]["ops-bot"]["status"] == "suspended"
            # A policy change still compiles.
            extra = {"extra/x.rego": "package warden.extra\n\nx := 1\n"}
            policy_server.state.publish(_policy("p2", modules=extra | policy.modules))
            while backend.revision != "p2+r2":
                assert time.monotonic() < deadline, "the policy bundle was never activated"
                time.sleep(0.02)
            assert len(compiled) == 2 and backend.policy is not policy
            assert "agent-not-active" in _rules(backend.decide(_request("ops-bot"))[0])
        finally:
            backend.close()


def test_decisions_wait_for_every_part():
    with BundleServer() as policy_server, BundleServer() as registry_server:
        policy_server.state.publish(_policy())
        bundles = BundleSet([_client(policy_server, "policy"), _client(registry_server, "registry")])
        backend = EmbeddedBackend(bundles)
        try:
            assert bundles.clients[0].wait_until_ready(20)
            decision, _ = backend.decide(_request("support-bot"))
            assert decision["allow"] is False and _rules(decision) == {"no-policy-bundle"}
        finally:
            backend.close()


def test_a_registry_bundle_claiming_the_policy_root_is_refused_and_the_previous_one_stays():
    with BundleServer() as policy_server, BundleServer() as registry_server:
        policy_server.state.publish(_policy())
        registry_server.state.publish(_registry())
        registry_client = _client(registry_server, "registry")
        bundles = BundleSet([_client(policy_server, "policy"), registry_client])
        backend = EmbeddedBackend(bundles, start=False)
        for client in bundles.clients:
            client.poll_once()
        assert backend.revision == "p1+r1"
        # A registry bundle whose roots overlap the policy's (it could shadow warden.*).
        registry_server.state.publish(_registry("r-evil", roots=("warden_registry", "warden/decision"), **{"x": "active"}))
        with pytest.raises(BundleError, match="overlap"):
            registry_client.poll_once()
        assert backend.revision == "p1+r1"
        assert registry_client.active.revision == "r1"


def test_merge_refuses_overlapping_roots_and_an_empty_root():
    policy = parse_bundle(_policy().archive, verification=VERIFY)
    assert merge_bundles([policy, parse_bundle(_registry().archive, verification=VERIFY)]).modules == policy.modules
    with pytest.raises(BundleError, match="overlap"):
        merge_bundles([policy, parse_bundle(_registry(roots=("",)).archive, verification=VERIFY)])
    with pytest.raises(BundleError, match="overlap"):
        merge_bundles([policy, parse_bundle(_policy("p2").archive, verification=VERIFY)])


def _slow(content: bytes) -> bytes:
    """The literal-keeping walk alone (the fast path bypassed)."""
    text = content.decode("utf-8", errors="replace").removeprefix("\ufeff")
    value = json.loads(text, parse_int=_NumberLiteral, parse_float=_NumberLiteral, parse_constant=_reject_constant)
    out: list[str] = []
    _canonical(value, out)
    return "".join(out).encode("utf-8")


@pytest.mark.parametrize(
    "content",
    [
        b'{"a":1,"b":[true,null,"x<y"]}',  # canonical: fast path
        b'{"b":1,"a":2}',  # unsorted
        b'{"a":1E5,"b":1e5,"c":100000.0,"d":-0,"e":0.10}',  # literals Python would rewrite
        b'{"a":"\\u00e9","b":"\xc3\xa9"}',  # escaped and raw
        b'{"a":"\\ud800"}',  # a lone surrogate
        b'{"a":1,"a":2}',  # a duplicate key
        b'\xef\xbb\xbf{"a":1}',  # a byte order mark
        b'{"a":"\xe2\x80\xa8"}',  # U+2028 raw: Go escapes it
        b'{"a":"\\u2028"}',
        b'{"a":12345678901234567890123,"b":1.5e-400}',
        b'{"x":"\xff"}',  # not UTF-8
        b"[" * 50 + b"]" * 50,
    ],
)
def test_canonical_file_bytes_fast_path_agrees_with_the_literal_walk(content):
    def outcome(function):
        try:
            return function(content)
        except ValueError as exc:  # e.g. a lone surrogate cannot be hashed: refused either way
            return type(exc)

    assert outcome(canonical_file_bytes) == outcome(_slow)


def test_warden_sidecar_runs_the_split_layout_from_an_opa_config(tmp_path):
    from agents_sdk.sidecar import Sidecar
    from agents_sdk.sidecar.config import parse_config
    from agents_sdk.tests.test_sidecar import request

    with BundleServer() as policy_server, BundleServer() as registry_server:
        policy_server.state.publish(_policy())
        registry_server.state.publish(_registry(**{"ops-bot": "active"}))

        def bundle(service: str, part: str) -> dict:
            return {"service": service, "resource": f"bundles/prod/{part}", "persist": True,
                    "polling": {"long_polling_timeout_seconds": 2}, "signing": {"keyid": "split-key"}}

        config = {
            "services": {
                "policy": {"url": policy_server.url + "/opa", "credentials": {"bearer": {"token": "env-token"}}},
                "registry": {"url": registry_server.url + "/opa", "credentials": {"bearer": {"token": "env-token"}}},
            },
            "keys": {"split-key": {"algorithm": "RS256", "key": SIGNER.public_pem}},
            "bundles": {"prod-policy": bundle("policy", "policy"), "prod-registry": bundle("registry", "registry")},
            "persistence_directory": str(tmp_path / "opa"),
        }
        sidecar = Sidecar(parse_config(config), addr="127.0.0.1:0").start()
        try:
            assert sidecar.bundles.wait_until_ready(20)
            assert set(sidecar.status()["bundles"]) == {"prod-policy", "prod-registry"}
            registry_server.state.publish(_registry("r2", **{"ops-bot": "suspended"}))
            deadline = time.monotonic() + 20
            while True:
                result = request(sidecar, "POST", "/v1/data/warden/decision", {"input": _request("ops-bot")})[1]["result"]
                if "agent-not-active" in _rules(result):
                    break
                assert time.monotonic() < deadline, "the sidecar never denied the suspended agent"
                time.sleep(0.05)
            assert sidecar.status()["bundles"]["prod-registry"]["active_revision"] == "r2"
        finally:
            sidecar.stop()


def test_a_verified_registry_is_decoded_once(monkeypatch):
    """Verifying data.json (its canonical hash) and loading it share one JSON decode: tens of
    MB at 100,000 agents."""
    data = registry(**{f"bot-{i:04d}": "active" for i in range(300)})
    # As Warden writes it: canonical JSON (the signed hash is of the canonical form either way).
    bundle = build_bundle(SIGNER, modules={}, data=data, roots=("warden_registry",), revision="r1",
                          tamper={"data.json": canonical_json(data)})
    decoded: list[int] = []
    real_loads = json.loads

    def counting_loads(text, *args, **kwargs):
        if len(text) > 20_000:
            decoded.append(len(text))
        return real_loads(text, *args, **kwargs)

    monkeypatch.setattr(json, "loads", counting_loads)
    parsed = parse_bundle(bundle.archive, verification=VERIFY)
    assert parsed.data["warden_registry"]["agents"]["bot-0007"]["status"] == "active"
    assert len(decoded) == 1, decoded
