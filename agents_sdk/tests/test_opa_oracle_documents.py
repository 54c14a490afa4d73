"""Whole documents (`GET /v1/data`, `/v1/data/warden`) answered as real OPA answers them.

Rego sets are JSON arrays in OPA's answers, in Rego's order; regorus' binding cannot turn a
set of objects into Python values, so the sidecar read such documents as JSON (and answered
500 before). Runs in `nox -s opa-oracle` next to test_engine_opa_oracle.py; skips elsewhere.
"""

from __future__ import annotations

import itertools
import os

import pytest

from agents_sdk.engine import RegoEngine, load_modules
from agents_sdk.engine.corpus import DATA, ORG_MODULES, SEED, corpus
from agents_sdk.engine.errors import RegoEvaluationError
from agents_sdk.sidecar.server import as_json
from agents_sdk.tests.conftest import REPO_ROOT
from agents_sdk.tests.test_sidecar_documents import SETS

if os.environ.get("WARDEN_OPA_ORACLE") == "1":
    import opa_bindings  # noqa: F401  (the oracle session must have real OPA)
else:
    pytest.importorskip("opa_bindings")

PACK = {p: s for p, s in load_modules(REPO_ROOT / "rego", relative_to=REPO_ROOT).items() if not p.endswith("_test.rego")}

# Known engine differences inside helper rules, never in a decision (the corpus test proves
# decisions identical): json.marshal text (Go escapes <>& and keeps a number's literal, 100.0)
# and numbers beyond 2^53, which regorus holds as doubles (the input contract refuses them).
MARSHALLED = {"args_text", "context_text", "input_text"}  # input_text: the two concatenated
EXACT = 2**53


def within_contract(value) -> bool:
    if isinstance(value, dict):
        return all(within_contract(v) for v in value.values())
    if isinstance(value, list):
        return all(within_contract(v) for v in value)
    return not isinstance(value, int | float) or isinstance(value, bool) or abs(value) <= EXACT


def comparable(document):
    """The document without the json.marshal helper texts (at any package depth)."""
    if isinstance(document, dict):
        return {k: comparable(v) for k, v in document.items() if k not in MARSHALLED}
    return document


# The data root holds every package; the others are a package, a set rule and a base document.
QUERIES = ["data", "data.warden.org.sets", "data.warden.org.sets.objects", "data.warden_registry"]


@pytest.fixture(scope="module", params=["library", "library+org"])
def engines(request):
    modules = PACK | SETS if request.param == "library" else PACK | SETS | ORG_MODULES
    return RegoEngine("regorus").compile(modules, DATA), RegoEngine("opa").compile(modules, DATA)


def test_whole_documents_with_sets_of_objects_match_real_opa(engines):
    regorus_policy, opa_policy = engines
    generated = [r for r in itertools.islice(corpus(SEED, 150), 150) if within_contract(r)]
    inputs = [{}, {"action": {"tool": "file_delete"}}, *generated]
    compared = 0
    for request, query in itertools.product(inputs, QUERIES):
        try:
            theirs = comparable(opa_policy.evaluate(query, request))
        except RegoEvaluationError:
            theirs = "error"  # a builtin error in an organisation rule: both engines must raise
        try:
            ours = comparable(as_json(regorus_policy.evaluate(query, request)))
        except RegoEvaluationError:
            ours = "error"
        assert ours == theirs, (query, request)
        compared += 1
    assert compared >= 500
    sets = as_json(regorus_policy.evaluate("data.warden.org.sets", {}))
    assert sets["objects"][0] == {} and sets["scalars"][:3] == [None, False, True]  # OPA's order, not JSON text order
    print(f"\nwhole documents: {compared} (query, input) pairs identical to OPA")
