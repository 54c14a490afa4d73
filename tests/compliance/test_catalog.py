"""The catalogs load and validate; control ids match the reference list; rule METADATA
names only controls that exist."""

from pathlib import Path

import pytest
import yaml

from controlplane.compliance.catalog import CatalogError, control_index, load_catalogs, parse_catalog
from controlplane.compliance.collectors import EVIDENCE_KINDS
from controlplane.compliance.rules import parse_rules
from controlplane.policies.library import library_modules

REFERENCE = Path("/work/shared/compliance/controls.yaml")

MINIMAL = """
framework:
  id: soc2
  name: SOC 2
  regulation: TSC
  retention: {subject: disposal, min_days: 0}
  applicability: {all: everything}
controls:
  - {id: CC1.1, title: t, requirement: r, evidence: [%s]}
"""


def test_every_catalog_loads_with_known_evidence_kinds():
    frameworks = load_catalogs()
    assert {f: len(c.controls) for f, c in frameworks.items()} == {"eu_ai_act": 27, "hipaa": 29, "soc2": 43}
    for framework in frameworks.values():
        for control in framework.controls:
            assert set(control.evidence) <= EVIDENCE_KINDS
            assert control.requirement and control.title


def test_hipaa_controls_say_required_or_addressable():
    hipaa = load_catalogs()["hipaa"]
    assert hipaa.control("164.312(b)").implementation == "required"
    assert hipaa.control("164.312(a)(2)(iv)").implementation == "addressable"
    assert hipaa.control("164.502(b)").implementation == "standard"
    assert hipaa.retention.subject == "policy_documentation" and hipaa.retention.min_days == 2190


def test_eu_dates_are_data():
    eu = load_catalogs()["eu_ai_act"]
    assert [str(d) for d, _ in eu.dates][:2] == ["2024-08-01", "2025-02-02"]
    assert eu.retention.min_days == 183
    assert eu.control("art14(4)(e)").applies_to == "high_risk" and eu.control("art4").applies_to == "all"


@pytest.mark.skipif(not REFERENCE.exists(), reason="the shared reference list is not mounted")
def test_control_ids_match_the_reference_list():
    reference = yaml.safe_load(REFERENCE.read_text())
    for framework_id, framework in load_catalogs().items():
        expected = [item["id"] for item in reference[framework_id]]
        assert [c.id for c in framework.controls] == expected


def test_unknown_evidence_kind_is_refused():
    with pytest.raises(CatalogError, match="CC1.1: unknown evidence kind 'telepathy'"):
        parse_catalog(MINIMAL % "telepathy", name="soc2.yaml", evidence_kinds=EVIDENCE_KINDS)
    assert parse_catalog(MINIMAL % "manual", name="soc2.yaml", evidence_kinds=EVIDENCE_KINDS).controls


def test_duplicate_ids_and_missing_fields_are_refused():
    duplicate = MINIMAL % "manual" + "  - {id: CC1.1, title: t, requirement: r, evidence: [manual]}\n"
    with pytest.raises(CatalogError, match="duplicate id"):
        parse_catalog(duplicate, name="soc2.yaml", evidence_kinds=EVIDENCE_KINDS)
    with pytest.raises(CatalogError, match="'requirement' is missing"):
        parse_catalog(MINIMAL.replace("requirement: r, ", "") % "manual", name="soc2.yaml",
                      evidence_kinds=EVIDENCE_KINDS)


def test_every_control_named_in_the_library_metadata_exists():
    rules = parse_rules(library_modules(include_tests=False))
    known = control_index()
    assert len(rules) >= 15
    unknown = {(r.id, c) for r in rules for c in r.controls if c not in known}
    assert unknown == set()
    by_id = {r.id: r for r in rules}
    assert by_id["agent-not-active"].effect == "deny"
    assert "eu_ai_act.art14(4)(e)" in by_id["agent-not-active"].controls
