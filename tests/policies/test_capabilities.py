"""The builtins organisation policy may call come from an OPA capabilities file
(controlplane/policies/capabilities/warden.json), refused at save time when left out."""

import json

import pytest

from agents_sdk.engine.outline import outline
from controlplane.core.exceptions import InvalidInput
from controlplane.policies.gate import (
    ALLOWED_BUILTINS,
    CAPABILITIES_DIR,
    OPA_BUILTINS,
    REFUSED_BUILTINS,
    check_organisation_module,
)
from controlplane.policies.library import library_modules


def test_warden_capabilities_are_opas_without_io_environment_and_randomness():
    warden = json.loads((CAPABILITIES_DIR / "warden.json").read_text())
    opa = json.loads((CAPABILITIES_DIR / "opa.json").read_text())
    assert set(warden) == set(opa) | {"allow_net"} and warden["allow_net"] == []
    assert [b for b in opa["builtins"] if b["name"] in ALLOWED_BUILTINS] == warden["builtins"]
    assert {"http.send", "net.lookup_ip_addr", "opa.runtime", "print", "trace", "rand.intn", "uuid.rfc4122"} <= REFUSED_BUILTINS
    assert REFUSED_BUILTINS == {n for n in OPA_BUILTINS if n.split(".")[0] in {"http", "net", "opa", "rand", "uuid", "providers"}
                                or n in {"print", "trace", "rego.parse_module"}}


def test_the_library_calls_only_builtins_the_capabilities_allow():
    called = set()
    for path, source in library_modules(include_tests=False).items():
        called |= {c.name for c in outline(path, source).calls if c.name in OPA_BUILTINS}
    assert called and called <= ALLOWED_BUILTINS, called - ALLOWED_BUILTINS


@pytest.mark.parametrize("builtin", sorted(REFUSED_BUILTINS) + ["net.some_future_builtin"])
def test_a_refused_builtin_is_refused_at_save_even_where_it_is_never_reached(builtin):
    source = f"package warden.org.probe\n\nimport rego.v1\n\ndeny contains x if {{\n\tfalse\n\tx := {builtin}(1)\n}}\n"
    with pytest.raises(InvalidInput) as refused:
        check_organisation_module("org/probe.rego", source)
    assert str(refused.value).startswith("org/probe.rego:7:")
    assert "capabilities/warden.json" in str(refused.value)
