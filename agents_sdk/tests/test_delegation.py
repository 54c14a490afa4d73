"""Delegation chains: verification, every hostile chain refused naming link and check, the
Guard's hook (policy sees only verified facts), signed records carrying the chain, and
property tests that a chain never grants more than any ancestor holds."""

from __future__ import annotations

import base64
import copy
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents_sdk.delegation import (
    MAX_CHAIN_BYTES,
    ChainCache,
    DelegationRefused,
    chain_problems,
    decode_chain,
    delegation_input,
    encode_chain,
    grant_hash,
    grant_signing_bytes,
    issue_grant,
    person_issuer,
    verify_chain,
)
from agents_sdk.guard import EmbeddedBackend, Guard
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from agents_sdk.tests.delegation_fixtures import Team
from agents_sdk.tests.signed_bundles import library_modules


@pytest.fixture(scope="module")
def team() -> Team:
    return Team()


def refused(token, registry, *, agent="executor", session="s-exe", now=None) -> DelegationRefused:
    with pytest.raises(DelegationRefused) as caught:
        verify_chain(token, registry, agent=agent, session_id=session, now=now)
    return caught.value


def resign(identity: AgentIdentity, grant: dict) -> dict:
    grant = dict(grant)
    grant["sig"] = base64.b64encode(identity.sign(grant_signing_bytes(grant))).decode()
    return grant


def test_valid_chain_gives_the_intersection_of_scopes_and_tightest_constraints(team):
    verified = verify_chain(team.token(), team.registry, agent="executor", session_id="s-exe")
    facts = verified.facts()
    assert facts["chain"] == ["orchestrator", "researcher", "executor"]
    assert facts["scopes"] == ["read:docs", "write:files"]
    assert facts["constraints"] == {"path_prefix": "/data/reports/", "max_amount": 100}
    assert facts["verified"] is True and facts["depth"] == 2
    assert facts["sessions"] == ["s-orch", "s-res", "s-exe"]


# -- the issue's "Bad input" list: each refused naming the link and the check ------------


def _forged(team):
    chain = team.chain()
    chain[1] = dict(chain[1], scopes=["read:docs", "write:files", "payments:create"])  # signature no longer covers it
    return chain


def _widening(team):
    return team.chain(scopes=["read:docs", "email:send"])


def _loop(team):
    chain = team.chain()
    # executor hands the researcher's grant back: researcher appears twice.
    back = team.grant("executor", "researcher", ["read:docs"], "s-res2", parent=chain[1])
    team.registry["delegation"]["rules"]["executor"] = {"may_delegate_to": ["researcher"]}
    return [*chain, back]


def _audience(team):
    chain = team.chain()
    # researcher's grant addressed to the orchestrator's key, not the executor's.
    return [chain[0], resign(team.ids["researcher"], dict(chain[1], aud=team.ids["orchestrator"].key_id))]


def _expired(team):
    return team.chain(now=int(time.time()) - 4000)


def _not_yet_valid(team):
    first = team.chain()[0]
    return [first, team.grant("researcher", "executor", ["read:docs"], "s-exe", parent=first,
                              constraints=first["constraints"], not_before=int(time.time()) + 120, lifetime=60)]


def _unknown_key(team):
    stranger = AgentIdentity.create("researcher", "x@example.com", ["read:docs"])
    first = team.chain()[0]
    grant = issue_grant(stranger, issuer="researcher", audience="executor", audience_key_id=team.ids["executor"].key_id,
                        scopes=["read:docs"], session="s-exe", parent=first, constraints=first["constraints"])
    return [first, grant]


def _too_deep(team):
    team.registry["delegation"]["rules"]["researcher"]["max_depth"] = 1
    return team.chain()


def _too_large(team):
    chain = team.chain()
    chain[1] = dict(chain[1], task="x" * 200)
    return encode_chain(chain) + "A" * (MAX_CHAIN_BYTES * 2)


class UnaskedBackend:
    """A backend holding bundle data whose engine must not be reached."""

    def __init__(self, data):
        self.data = data

    def decide(self, input, *, timeout=None):
        raise AssertionError("a refused chain reached the engine")

    def close(self):
        pass


HOSTILE = {
    # case: (build, link, check)
    "forged signature": (_forged, 2, "signature"),
    "link that widens scopes": (_widening, 2, "attenuation"),
    "chain with a loop": (_loop, 3, "loop"),
    "audience mismatch": (_audience, 2, "audience"),
    "expired link": (_expired, 1, "expired"),
    "not-yet-valid link": (_not_yet_valid, 2, "not-yet-valid"),
    "unknown issuer key": (_unknown_key, 2, "issuer-key"),
    "chain deeper than allowed": (_too_deep, 2, "depth"),
    "chain over the size limit": (_too_large, None, "size"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_chain_is_refused_naming_link_and_check_and_recorded(case):
    team = Team()
    build, link, check = HOSTILE[case]
    chain = build(team)
    token = chain if isinstance(chain, str) else encode_chain(chain)
    error = refused(token, team.registry)
    assert (error.link, error.check) == (link, check), str(error)
    where = "chain: size" if link is None else f"link {link} ("
    assert str(error).startswith(where)
    # Through the Guard: a deny naming the link and check, signed into the session's log;
    # the engine is never asked.
    identity = team.ids["executor"]
    guard = Guard(identity, UnaskedBackend(team.data()), session_id="s-exe", signer=ActionSigner(identity))
    decision = guard.check("doc_search", {"query": "q"}, delegation=token)
    assert [r.rule for r in decision.reasons] == ["delegation-invalid"]
    assert f"refused at {where}" in decision.reasons[0].message and f": {check}: " in decision.reasons[0].message
    recorded = guard.signer.session_log("s-exe")[-1]["payload"]
    assert recorded["effect"] == "deny" and recorded["reasons"][0]["message"] == decision.reasons[0].message


def test_revoked_grant_is_refused_and_stops_the_links_beneath_it():
    team = Team()
    chain = team.chain()
    team.registry["delegation"]["revoked"] = [grant_hash(chain[0])]
    error = refused(encode_chain(chain), team.registry)
    assert (error.link, error.check) == (1, "revoked")


def test_grant_replayed_for_another_session_is_refused():
    team = Team()
    error = refused(team.token(), team.registry, session="s-other")
    assert (error.link, error.check) == (2, "session")


def test_delegation_outside_the_allowlist_is_refused():
    team = Team()
    team.registry["delegation"]["rules"]["researcher"]["may_delegate_to"] = []
    assert refused(team.token(), team.registry).check == "allowlist"


@pytest.mark.parametrize("may_act_for, accepted", [
    (["alice@example.com"], True), (["@example.com"], True), (["*"], True), (["ALICE@Example.com"], True),
    (["bob@example.com"], False), (["@example.org"], False), ([], False), (None, False), ("*", False),
])
def test_a_person_grant_needs_the_person_in_the_audiences_may_act_for(may_act_for, accepted):
    team = Team()
    authority = AgentIdentity.create("authority", "ops@example.com", [])
    team.registry["delegation"]["authorities"] = {authority.key_id: {"public_key": authority.public_key_b64}}
    if may_act_for is not None:
        team.registry["delegation"]["rules"]["orchestrator"]["may_act_for"] = may_act_for
    root = issue_grant(authority, issuer=person_issuer("alice@example.com"), audience="orchestrator",
                       audience_key_id=team.ids["orchestrator"].key_id, scopes=["read:docs"], session="s-orch")
    if accepted:
        assert verify_chain([root], team.registry, agent="orchestrator", session_id="s-orch").facts()["origin"] == \
            "person:alice@example.com"
    else:
        error = refused([root], team.registry, agent="orchestrator", session="s-orch")
        assert (error.link, error.check) == (1, "allowlist") and "may not act for person:alice" in str(error)


def test_lifetime_above_the_registry_limit_is_refused():
    team = Team()
    team.registry["delegation"]["rules"]["orchestrator"]["max_lifetime_seconds"] = 60
    error = refused(team.token(), team.registry)
    assert (error.link, error.check) == (1, "lifetime")


def test_root_grant_beyond_the_issuers_own_scopes_is_refused():
    team = Team()
    team.registry["agents"]["orchestrator"]["scopes"] = ["read:docs"]
    error = refused(team.token(), team.registry)
    assert (error.link, error.check) == (1, "attenuation")


def test_a_chain_for_another_agent_is_refused():
    team = Team()
    assert refused(team.token(), team.registry, agent="researcher").check == "audience"


@pytest.mark.parametrize("token", [42, "", "wdc1.", "wdc1.!!!", "wdc1." + "e30", "nope", ["x"], [], "wdc1.W10"])
def test_malformed_tokens_are_refused_not_crashed(token):
    team = Team()
    assert refused(token, team.registry).check in ("form", "size")


def test_removing_a_middle_link_breaks_the_parent_hash():
    team = Team()
    chain = team.chain()
    extra = team.grant("executor", "researcher", ["read:docs"], "s-x", parent=chain[1])
    error = refused(encode_chain([chain[0], extra]), team.registry)
    assert (error.link, error.check) in ((2, "parent-hash"), (2, "audience"))


# -- the Guard: the policy sees verified facts only, and refusals are recorded ----------


@pytest.fixture(scope="module")
def modules():
    return library_modules()


def executor_guard(team: Team, modules) -> Guard:
    identity = team.ids["executor"]
    backend = EmbeddedBackend.from_modules(modules, team.data())
    return Guard(identity, backend, environment="prod", session_id="s-exe", signer=ActionSigner(identity))


def test_guard_allows_within_the_narrowed_scopes_and_denies_beyond_them(modules):
    team = Team()
    guard = executor_guard(team, modules)
    token = team.token()
    assert guard.check("doc_search", {"query": "q"}, delegation=token).effect == "allow"
    assert guard.check("file_write", {"path": "/data/reports/a.txt", "content": "x"}, delegation=token).effect == "allow"
    beyond = guard.check("ticket_read", {"id": 7}, delegation=token)
    assert beyond.effect == "deny" and "delegation-scope" in {r.rule for r in beyond.reasons}
    outside = guard.check("file_write", {"path": "/data/other.txt", "content": "x"}, delegation=token)
    assert "delegation-path" in {r.rule for r in outside.reasons}
    # Without the chain the executor acts on its own registry scopes.
    assert guard.check("ticket_read", {"id": 7}).effect == "allow"


def test_suspending_the_orchestrator_denies_everything_beneath_it(modules):
    team = Team()
    token = team.token()
    team.registry["agents"]["orchestrator"]["status"] = "suspended"
    decision = executor_guard(team, modules).check("doc_search", {"query": "q"}, delegation=token)
    assert decision.effect == "deny"
    assert "delegation-agent-not-active" in {r.rule for r in decision.reasons}


def test_guard_refusal_names_link_and_check_and_is_signed(modules):
    team = Team()
    guard = executor_guard(team, modules)
    decision = guard.check("doc_search", {"query": "q"}, delegation=encode_chain(_forged(team)))
    assert [r.rule for r in decision.reasons] == ["delegation-invalid"]
    assert "link 2 (researcher → executor): signature" in decision.reasons[0].message
    recorded = guard.signer.session_log("s-exe")[-1]
    assert recorded["kind"] == "decision" and recorded["payload"]["reasons"][0]["rule"] == "delegation-invalid"


def test_a_caller_cannot_forge_input_delegation(modules):
    team = Team()
    guard = executor_guard(team, modules)
    forged = guard.build_input("ticket_read", {"id": 7}, delegation=team.token())
    facts, _, _ = delegation_input(forged, team.registry)
    forged = dict(forged, delegation=dict(facts["delegation"], scopes=["read:tickets"]))
    forged["context"] = {k: v for k, v in forged["context"].items() if k != "delegation"}
    decision = guard.decide(forged)
    # Without a chain to verify, the claimed facts are dropped: the executor's own scopes decide.
    assert decision.effect == "allow"
    forged["context"]["delegation"] = team.token()
    assert "delegation-scope" in {r.rule for r in guard.decide(forged).reasons}


def test_signed_intent_carries_the_chain_and_audit_checks_it(modules):
    team = Team()
    guard = executor_guard(team, modules)
    guard.check("doc_search", {"query": "q"}, delegation=team.token())
    records = guard.signer.session_log("s-exe")
    intent = records[0]["payload"]
    assert intent["delegation"]["chain"] == ["orchestrator", "researcher", "executor"]
    keys = {i.key_id: i.public_key for i in team.ids.values()}
    assert chain_problems(records, keys) == (1, [])
    tampered = copy.deepcopy(records)
    chain = decode_chain(tampered[0]["payload"]["delegation"]["token"])
    chain[1]["scopes"] = ["payments:create"]
    tampered[0]["payload"]["delegation"]["token"] = encode_chain(chain)
    checked, problems = chain_problems(tampered, keys)
    assert problems and problems[0][1].startswith("link 2: signature")


def test_cache_rechecks_session_and_time_and_empties_on_a_new_registry():
    team = Team()
    cache = ChainCache()
    token = team.token()
    now = time.time()
    assert len(cache.verify(token, team.registry, "executor", "s-exe", now).grants) == 2
    with pytest.raises(DelegationRefused):
        cache.verify(token, team.registry, "executor", "s-other", now)
    with pytest.raises(DelegationRefused):
        cache.verify(token, team.registry, "executor", "s-exe", now + 10_000)
    suspended = copy.deepcopy(team.registry)
    suspended["delegation"]["revoked"] = [grant_hash(decode_chain(token)[1])]
    with pytest.raises(DelegationRefused):
        cache.verify(token, suspended, "executor", "s-exe", now)


# -- properties: effective permissions never exceed any ancestor's ----------------------

ALL_SCOPES = sorted(Team().registry["agents"]["orchestrator"]["scopes"])
ALL_TOOLS = ["doc_search", "file_write", "payment_create", "email_send"]
PREFIXES = ["/data/", "/data/reports/", "/data/reports/q1/", "/home/", "/"]

_TEAM = Team()


@st.composite
def random_link(draw):
    return {
        "scopes": draw(st.lists(st.sampled_from(ALL_SCOPES), unique=True, max_size=4)),
        "tools": draw(st.none() | st.lists(st.sampled_from(ALL_TOOLS), unique=True, max_size=4)),
        "prefix": draw(st.none() | st.sampled_from(PREFIXES)),
        "amount": draw(st.none() | st.integers(0, 1000)),
        "lifetime": draw(st.integers(1, 3000)),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(random_link(), min_size=1, max_size=2))
def test_effective_permissions_never_exceed_any_ancestors(links):
    team = _TEAM
    names = ["orchestrator", "researcher", "executor"][: len(links) + 1]
    now = int(time.time())
    chain: list[dict] = []
    for index, link in enumerate(links):
        constraints = {k: v for k, v in (("path_prefix", link["prefix"]), ("max_amount", link["amount"])) if v is not None}
        chain.append(team.grant(names[index], names[index + 1], link["scopes"], f"s-{index}",
                                parent=chain[-1] if chain else None, tools=link["tools"],
                                constraints=constraints or None, lifetime=link["lifetime"], now=now,
                                parent_session=None if chain else "s-root"))
    try:
        facts = verify_chain(chain, team.registry, agent=names[-1], session_id=f"s-{len(links) - 1}", now=now).facts()
    except DelegationRefused as error:
        assert error.check in ("attenuation", "lifetime"), str(error)
        return
    root_scopes = set(team.registry["agents"][names[0]]["scopes"])
    assert set(facts["scopes"]) <= root_scopes
    for grant in chain:  # every ancestor's grant bounds the effective permissions
        assert set(facts["scopes"]) <= set(grant["scopes"])
        if "tools" in grant:
            assert set(facts["tools"]) <= set(grant["tools"])
        for name, bound in (grant.get("constraints") or {}).items():
            value = facts["constraints"][name]
            assert value.startswith(bound) if name == "path_prefix" else value <= bound
        assert facts["expires"] <= grant["exp"]


def test_warden_audit_verify_checks_the_chains_records_carry(modules, tmp_path):
    from agents_sdk.records import write_jsonl
    from agents_sdk.tests.conftest import run_warden

    team = Team()
    guard = executor_guard(team, modules)
    guard.check("doc_search", {"query": "q"}, delegation=team.token())
    log = tmp_path / "s.jsonl"
    write_jsonl(log, guard.signer.session_log())
    keys = []
    for name, identity in team.ids.items():
        identity.save(tmp_path / f"{name}.pem")
        keys += ["--public-key", str(tmp_path / f"{name}.pem.json")]
    done = run_warden("audit", "verify", str(log), *keys)
    assert done.returncode == 0 and "1 delegation chain verified" in done.stdout, done.stdout + done.stderr
    # Without the researcher's key its link cannot be checked: a failure naming link and check.
    only_executor = ["--public-key", str(tmp_path / "executor.pem.json"), "--public-key", str(tmp_path / "orchestrator.pem.json")]
    done = run_warden("audit", "verify", str(log), *only_executor)
    assert done.returncode != 0 and "delegation link 2: issuer-key" in done.stdout, done.stdout
