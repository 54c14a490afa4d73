"""Every template: its generated module passes the publish gate, its generated tests pass
under regorus (real OPA: the opa-oracle session runs the same files), and inside the full
decision it blocks, holds or masks what its examples say."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from agents_sdk.engine import RegoEngine
from controlplane.authoring.examples import example_tests
from controlplane.authoring.samples import SAMPLES, call, generated_files
from controlplane.authoring.templates import TEMPLATES, module_kind, module_source, sentence, validate
from controlplane.core.exceptions import InvalidInput
from controlplane.policies.gate import check_organisation_module
from controlplane.policies.library import library_modules

GENERATED = Path(__file__).resolve().parents[2] / "controlplane" / "authoring" / "generated"
ENGINE = RegoEngine()


def test_every_template_has_a_sample():
    assert set(SAMPLES) == set(TEMPLATES)


def test_checked_in_generated_files_are_current():
    # The opa-oracle session tests these files under real OPA; they must be what the code generates.
    found = {path.relative_to(GENERATED).as_posix(): path.read_text(encoding="utf-8") for path in GENERATED.rglob("*.rego")}
    assert found == generated_files(), "run: python -m controlplane.authoring.samples"


@pytest.mark.parametrize("key", sorted(TEMPLATES))
def test_generated_module_and_tests_pass_the_gate_and_their_tests(key):
    sample = SAMPLES[key]
    source = module_source(key, sample["params"])
    tests = example_tests(sample["params"], sample["examples"], module_kind(key, sample["params"]))
    name = sample["params"]["name"]
    assert check_organisation_module(f"org/{name}.rego", source).package == f"warden.org.{name}"
    assert check_organisation_module(f"org/{name}_test.rego", tests).package == f"warden.org_test.{name}"
    assert "# METADATA" in source and f"owner: {sample['params']['owner']}" in source
    report = ENGINE.run_tests({f"org/{name}.rego": source, f"org/{name}_test.rego": tests})
    assert report.ok and report.passed == len(sample["examples"]), [r.message for r in report.failures]


@pytest.mark.parametrize("key", sorted(TEMPLATES))
def test_a_wrong_example_fails_its_generated_test(key):
    sample = SAMPLES[key]
    flipped = copy.deepcopy(sample["examples"])
    flipped[0]["expect"] = "pass"  # every sample's first example blocks, holds or masks
    name = sample["params"]["name"]
    files = {
        f"org/{name}.rego": module_source(key, sample["params"]),
        f"org/{name}_test.rego": example_tests(sample["params"], flipped, module_kind(key, sample["params"])),
    }
    report = ENGINE.run_tests(files)
    assert [r.path.rsplit(".", 1)[-1] for r in report.failures] == ["test_example_1_passes"]


REGISTRY = {
    "environment": "prod",
    "agents": {"finance-bot": {"status": "active", "team": "finance", "risk_tier": "high", "scopes": ["all"]}},
    "tools": {name: {"scopes": ["all"]} for name in [
        "file_delete", "pay_invoice", "web_search", "http_request", "ticket_read", "email_send", "deploy",
    ]},
}
EFFECTS = {"deny": "deny", "hold": "require_approval", "pass": "allow", "mask": "allow"}


@pytest.mark.parametrize("key", sorted(TEMPLATES))
def test_generated_module_decides_its_examples_inside_the_full_decision(key):
    sample = SAMPLES[key]
    name = sample["params"]["name"]
    policy = ENGINE.compile(
        library_modules(include_tests=False) | {f"org/{name}.rego": module_source(key, sample["params"])},
        {"warden_registry": REGISTRY},
    )
    for example in sample["examples"]:
        if example.get("agent") and example["agent"].get("team") != "finance":
            continue  # the registry above has the finance agent only
        if example.get("environment", "prod") != "prod":
            continue
        decision = policy.decide(example["input"])
        assert decision["effect"] == EFFECTS[example["expect"]], (example["description"], decision)
        if example["expect"] == "mask":
            assert "/action/args/iban" in decision["obligations"]["mask"]


def test_log_only_module_is_evaluated_but_not_enforced():
    params = {**SAMPLES["block_tool"]["params"], "log_only": True}
    policy = ENGINE.compile(
        library_modules(include_tests=False) | {"org/x.rego": module_source("block_tool", params)},
        {"warden_registry": {**REGISTRY, "protected_paths": []}},
    )
    decision = policy.decide(call("file_delete", {"path": "/prod/db"}))
    assert decision["effect"] == "allow"
    assert decision["log_only"]["effect"] == "deny"
    assert [r["rule"] for r in decision["log_only"]["reasons"]] == ["no-prod-deletes"]


@pytest.mark.parametrize(("key", "expected"), [
    ("require_approval", "Calls to pay_invoice over 10,000 EUR by agents of team finance wait for two approvers."),
    ("block_tool", "Calls to file_delete on paths under /prod/ in prod are blocked."),
    ("rate_limit", "Calls to web_search beyond 30 per minute for each agent are blocked."),
    ("restrict_egress", "Calls to http_request may reach only api.crm.example.com, *.internal.example.com; any other host is blocked."),
    ("mask_fields", "The iban, account_holder arguments of pay_invoice are masked in the audit log."),
    ("sequence_deny", "Calls to email_send after calling hr_records_read or reading data labelled sensitive in the same session are blocked."),
    ("quiet_hours", "Calls to deploy between 22:00 and 06:00 UTC in prod wait for one approver."),
])
def test_plain_language_preview(key, expected):
    assert sentence(key, SAMPLES[key]["params"]) == expected


@pytest.mark.parametrize(("params", "field"), [
    ({"tools": ["x"], "effect": "deny", "owner": "a@b.c"}, "params"),  # no name
    ({"name": "Bad-Name", "tools": ["x"], "effect": "deny", "owner": "a@b.c"}, "params.name"),
    ({"name": "x", "tools": ['x" } else := true #'], "effect": "deny", "owner": "a@b.c"}, "params.tools.0"),
    ({"name": "x", "tools": ["x"], "effect": "deny", "owner": "a@b.c", "title": "t\npackage warden"}, "params.title"),
    ({"name": "x", "tools": ["x"], "effect": "deny", "owner": "a@b.c", "when": {"hosts": ["EVIL.test\n"]}}, "params.when.hosts.0"),
    ({"name": "x", "tools": ["x"], "effect": "allow", "owner": "a@b.c"}, "params.effect"),
    ({"name": "x", "tools": ["x"], "effect": "deny", "owner": "a@b.c", "extra": 1}, "params"),
    ({"name": "x", "tools": ["x"], "effect": "deny", "owner": "a@b.c", "when": {"amount_over": {"limit": 1e300}}}, "params.when.amount_over.limit"),
])
def test_hostile_parameters_are_refused_naming_the_field(params, field):
    with pytest.raises(InvalidInput) as refused:
        validate("block_tool", params)
    assert refused.value.field == field


def test_generated_rego_quotes_every_value():
    params = {**SAMPLES["block_tool"]["params"], "message": 'say "hi" \\ }', "controls": ["soc2.CC6.1"]}
    source = module_source("block_tool", params)
    check_organisation_module("org/x.rego", source)  # still one module that compiles
    assert '"message": "say \\"hi\\" \\\\ }"' in source


def test_sequence_sentence_with_labels_only():
    params = {"name": "x", "owner": "a@b.c", "tools": ["email_send"], "effect": "deny", "after_labels": ["sensitive"]}
    assert sentence("sequence_deny", params) == "Calls to email_send after reading data labelled sensitive in the same session are blocked."
