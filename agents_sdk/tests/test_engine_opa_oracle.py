"""Real OPA as the oracle: the pack's tests and a differential corpus must agree with regorus.

Runs in `nox -s opa-oracle` (part of `make test`), where the real OPA engine
(`opa-golib-python-bindings`, OPA 1.20) is installed; WARDEN_OPA_ORACLE=1 there makes a
missing OPA a failure rather than a skip. In the main environment these tests skip.
"""

from __future__ import annotations

import os
import re
from collections import Counter

import pytest

from agents_sdk.engine import RegoEngine, load_modules
from agents_sdk.engine.corpus import DATA, ORG_MODULES, SIZE, corpus, decision_summary, oracle_corpus_settings
from agents_sdk.tests.conftest import REPO_ROOT

if os.environ.get("WARDEN_OPA_ORACLE") == "1":
    import opa_bindings  # noqa: F401  (the oracle session must have real OPA)
else:
    pytest.importorskip("opa_bindings")

LIBRARY = load_modules(REPO_ROOT / "rego", relative_to=REPO_ROOT)
PACK = {path: source for path, source in LIBRARY.items() if not path.endswith("_test.rego")}
# default-deny is the backstop for an active agent that nothing else allows or refuses,
# which the registry's own rules leave no room for; every other rule must be reached.
RULE_IDS = sorted(
    {rule for source in PACK.values() for rule in re.findall(r'"rule": "([a-z0-9-]+)"', source)} - {"default-deny"}
)
ORG_RULE_IDS = sorted(RULE_IDS + ["org-no-ticket-13", "org-srv-reads"])


# The library alone (regorus decides on its compiled VM) and with organisation policy
# (regorus' interpreter decides): both paths must agree with OPA.
@pytest.fixture(scope="module", params=["library", "library+org"])
def engines(request):
    modules = PACK if request.param == "library" else PACK | ORG_MODULES
    rule_ids = [r for r in RULE_IDS if not r.startswith("org-")] if request.param == "library" else ORG_RULE_IDS
    return RegoEngine("regorus").compile(modules, DATA), RegoEngine("opa").compile(modules, DATA), rule_ids


@pytest.mark.parametrize("backend", ["regorus", "opa"])
def test_every_library_rego_test_passes(backend):
    report = RegoEngine(backend).run_tests(LIBRARY)
    assert report.failures == []
    assert report.passed >= 97, report.summary()
    print(f"{backend}: {report.summary()}")


def test_differential_corpus_has_no_disagreements(engines):
    regorus_policy, opa_policy, rule_ids = engines
    disagreements = []
    reached: Counter = Counter()
    seed, requested = oracle_corpus_settings()  # WARDEN_ORACLE_CORPUS_SEED / _SIZE for a longer run
    size = 0
    for index, request in enumerate(corpus(seed, requested)):
        size += 1
        ours, theirs = decision_summary(regorus_policy.decide(request)), decision_summary(opa_policy.decide(request))
        reached.update(ours[1])
        if ours != theirs:
            disagreements.append((index, request, ours, theirs))
    print(f"corpus (seed {seed}): {size} inputs, {len(disagreements)} disagreements; rules reached: {dict(sorted(reached.items()))}")
    assert size == requested >= SIZE
    assert disagreements[:5] == []
    unreached = [rule for rule in rule_ids if rule not in reached]
    assert unreached == [], f"rules the corpus never reaches: {unreached}"


def test_real_opa_compiles_the_pack_with_bundle_data():
    # What a real OPA sidecar would activate: the library without tests, and registry data.
    policy = RegoEngine("opa").compile(PACK, DATA)
    assert policy.decide({})["effect"] == "deny"
