"""`GET /v1/data` and `/v1/data/warden` over HTTP: whole documents, sets as arrays, never a 500.

regorus' binding cannot turn a Rego set of objects into Python values and its evaluation of a
whole package gave wrong values; the sidecar answered these paths with a JSON 500. Real OPA's
answers for the same documents are compared in test_opa_oracle_documents.py (oracle session).
"""

from __future__ import annotations

import gc
import http.client
import json
import logging
import sys

import pytest

from agents_sdk.sidecar import Sidecar, parse_config
from agents_sdk.tests.signed_bundles import BundleServer, RSASigner, build_bundle, library_modules, registry

# Sets of every kind of member, nested in objects and in sets, and a partial object.
SETS = {"org/sets.rego": """package warden.org.sets

import rego.v1

scalars contains x if some x in [10, 9, 3, -1, 2.5, 1e3, "b", "a", "é", "Z", "", null, true, false]
arrays contains x if some x in [[2], [1, 2], [1], ["a"], [null], []]
objects contains x if some x in [{"b": 1}, {"a": 2}, {"a": 1, "b": 0}, {"a": 1}, {"a": {"x": 1}}, {}]
nested contains {"k": {1, 2, "x"}, "s": {{"a": 1}}} if true
sets_of_sets contains {1, 2} if true
sets_of_sets contains {"a"} if true
by_tool[input.action.tool] := {t | some t in ["x", "y"]} if is_string(input.action.tool)
echo := input
"""}

BOOM = {"org/boom.rego": "package warden.org.boom\n\nimport rego.v1\n\nratio := 1 / input.zero\n"}
REQUEST = {"agent": {"id": "support-bot"}, "action": {"type": "tool_call", "tool": "file_delete",
                                                      "args": {"path": "/prod/x"}}, "context": {"environment": "prod"}}


@pytest.fixture(scope="module")
def signer() -> RSASigner:
    return RSASigner("warden-test")


@pytest.fixture
def sidecar(signer, tmp_path):
    with BundleServer() as server:
        server.state.publish(build_bundle(signer, modules=library_modules() | SETS | BOOM, data=registry()))
        config = {
            "services": {"cp": {"url": server.url + "/opa", "credentials": {"bearer": {"token": "env-token"}}}},
            "keys": {"warden-test": {"algorithm": "RS256", "key": signer.public_pem}},
            "bundles": {"prod": {"service": "cp", "resource": "bundles/prod", "signing": {"keyid": "warden-test"}}},
        }
        sidecar = Sidecar(parse_config(config), addr="127.0.0.1:0").start()
        assert sidecar.bundles.wait_until_ready(10)
        yield sidecar
        sidecar.stop()


def call(sidecar, method, path, body=None):
    connection = http.client.HTTPConnection(*sidecar.address, timeout=10)
    try:
        connection.request(method, path, body=None if body is None else json.dumps(body).encode(),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_whole_documents_answer_200_with_sets_as_arrays_in_regos_order(sidecar):
    status, root = call(sidecar, "GET", "/v1/data")
    assert status == 200, root
    sets = root["result"]["warden"]["org"]["sets"]
    assert sets["objects"] == [{}, {"a": 1}, {"a": 1, "b": 0}, {"a": 2}, {"a": {"x": 1}}, {"b": 1}]
    assert sets["scalars"] == [None, False, True, -1, 2.5, 3, 9, 10, 1000, "", "Z", "a", "b", "é"]
    assert sets["arrays"] == [[], [None], [1], [1, 2], [2], ["a"]]
    assert sets["nested"] == [{"k": [1, 2, "x"], "s": [{"a": 1}]}]
    assert root["result"]["warden_registry"] == registry()["warden_registry"]  # base documents too
    assert "ratio" not in root["result"]["warden"]["org"].get("boom", {})  # 1 / undefined: left out

    # The package's decision is the decision the decision path gives, and input reaches it.
    status, package = call(sidecar, "POST", "/v1/data/warden", {"input": REQUEST})
    _, decision = call(sidecar, "POST", "/v1/data/warden/decision", {"input": REQUEST})
    assert status == 200 and package["result"]["decision"] == decision["result"]
    assert package["result"]["decision"]["effect"] == "require_approval"
    status, objects = call(sidecar, "GET", "/v1/data/warden/org/sets/objects")
    assert status == 200 and objects["result"] == sets["objects"]
    status, echo = call(sidecar, "POST", "/v1/data/warden/org/sets", {"input": {"action": {"tool": "t"}}})
    assert echo["result"]["by_tool"] == {"t": ["x", "y"]} and echo["result"]["echo"] == {"action": {"tool": "t"}}
    # An empty package is {} (OPA's answer), an unknown path is undefined (no result).
    assert call(sidecar, "GET", "/v1/data/nothing/here")[1].keys() == {"decision_id"}


def holds_no_engine(record: logging.LogRecord) -> bool:
    """Nothing the record keeps (its arguments, its exception's frames) reaches an engine."""
    tracebacks = [record.exc_info[2]] if record.exc_info and record.exc_info[2] else []
    tracebacks += [arg.__traceback__ for arg in record.args or () if isinstance(arg, BaseException)]
    for tb in tracebacks:
        while tb is not None:
            if any(type(value).__name__ in ("Session", "Engine", "Rvm") for value in tb.tb_frame.f_locals.values()):
                return False
            tb = tb.tb_next
    return True


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("hostile", [{"zero": 0}, {"zero": "0"}, {"zero": [0]}, {"zero": None}])
def test_an_evaluation_error_in_a_document_is_a_json_500_and_leaves_no_engine_behind(sidecar, caplog, hostile):
    """The error is logged as text: a kept log record (pytest's caplog, a memory handler) held
    the exception, whose frames held the serving thread's regorus engine, and the main thread
    later dropped it: "regoruspy::Engine is unsendable, but is being dropped on another thread"."""
    caplog.set_level(logging.INFO, logger="agents_sdk.sidecar.server")
    status, answer = call(sidecar, "POST", "/v1/data/warden/org/boom", {"input": hostile})
    if hostile["zero"] == 0:
        assert status == 500 and answer["code"] == "internal_error" and "divide by zero" in answer["message"]
    else:
        assert status in (200, 500)  # undefined, or a type error: both as OPA answers them
    status, whole = call(sidecar, "POST", "/v1/data", {"input": hostile})
    assert status in (200, 500) and isinstance(whole, dict)
    assert caplog.records and all(holds_no_engine(record) for record in caplog.records)
    sidecar.stop()  # the serving thread ends and drops its own engines
    unraisable = []
    previous, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        caplog.clear()
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert [str(u.exc_value) for u in unraisable] == []
