"""The publish gate: organisation policy can add denials, holds and masks, never weaken the
library; modules real OPA would refuse, or that do I/O, are refused at save with
file:line:col; slow modules are refused by the limited compile worker; relaxations flagged."""

import pytest

from agents_sdk.engine import RegoEngine
from agents_sdk.engine.corpus import DATA
from controlplane.changelog.models import ObjectChange
from controlplane.core.exceptions import InvalidInput
from controlplane.policies import services
from controlplane.policies.library import library_modules
from controlplane.policies.models import PolicyModule
from tests.policies.test_services import DENY_REFUNDS

pytestmark = pytest.mark.django_db

PROD_DELETE = {"agent": {"id": "support-bot"}, "action": {"tool": "file_delete", "args": {"path": "/prod/x"}}}

BACKDOORS = {
    # The review's attempts: an allow added to the library's package, and a test package
    # that makes the failing library tests pass again.
    "approval in the library package": "package warden\n\nimport rego.v1\n\napproval_granted if true\n",
    "quiet approval in the library package": 'package warden\n\nimport rego.v1\n\napproval_granted if input.context.ticket == "OPS-7731"\n',
    "library test package": "package warden_test\n\nimport rego.v1\n\ntest_prod_delete_requires_approval if true\n",
    "registry package": "package warden_registry\n\nimport rego.v1\n\nagents := {}\n",
    "system log mask": 'package system.log\n\nimport rego.v1\n\nmask contains "/input"\n',
    "package hidden after a raw string": "# c\npackage warden.org.x\n\nimport rego.v1\n\nx := `\npackage y`\n",
}


@pytest.mark.parametrize("name", sorted(BACKDOORS))
def test_modules_outside_the_organisation_namespace_are_refused(admin_user, name):
    source = BACKDOORS[name]
    if name == "package hidden after a raw string":
        # the real package (warden.org.x) is read from the parse tree, so this one is fine
        assert services.save_policy_module(path="x.rego", source=source, by=admin_user).module.package == "warden.org.x"
        return
    with pytest.raises(InvalidInput, match="is not allowed") as error:
        services.save_policy_module(path="backdoor.rego", source=source, by=admin_user)
    assert error.value.details[0]["file"] == "org/backdoor.rego"
    assert error.value.details[0]["line"] == 1
    assert not PolicyModule.objects.exists()


def test_organisation_rules_named_like_library_rules_cannot_allow(admin_user):
    # Rules of the same name are OR-ed only within a package: in warden.org.* they add nothing.
    source = "package warden.org.ops\n\nimport rego.v1\n\napproval_granted if true\n\nallowed if true\n"
    services.save_policy_module(path="ops.rego", source=source, by=admin_user)
    policy = RegoEngine().compile(library_modules(include_tests=False) | services.organisation_modules(), DATA)
    assert policy.decide(PROD_DELETE)["effect"] == "require_approval"


@pytest.mark.parametrize(
    "call, line",
    [
        ('x := http.send({"method": "get", "url": "https://evil.example"})', 5),
        ("x := opa.runtime()", 5),
        ('x := net.lookup_ip_addr("evil.example")', 5),
        ('x if print("hello")', 5),
        ('x := 1 if false else := http.send({"method": "get", "url": "u"})', 5),
    ],
)
def test_io_and_environment_builtins_are_refused_even_when_unreached(admin_user, call, line):
    source = f"package warden.org.io\n\nimport rego.v1\n\n{call}\n"
    with pytest.raises(InvalidInput, match="is not allowed in policy") as error:
        services.save_policy_module(path="io.rego", source=source, by=admin_user)
    detail = error.value.details[0]
    assert (detail["file"], detail["line"]) == ("org/io.rego", line)
    assert detail["column"] > 1


def test_duplicate_defaults_are_refused_across_modules(admin_user):
    services.save_policy_module(path="a.rego", source="package warden.org.shared\n\nimport rego.v1\n\ndefault limit := 1\n", by=admin_user)
    with pytest.raises(InvalidInput, match="multiple default rules data.warden.org.shared.limit") as error:
        services.save_policy_module(path="b.rego", source="package warden.org.shared\n\nimport rego.v1\n\ndefault limit := 2\n", by=admin_user)
    assert error.value.details[0]["file"] == "org/b.rego"
    assert error.value.details[0]["line"] == 5


@pytest.mark.parametrize("reference", ["data.warden.decision.allow", "data.warden.deny", "data.warden[input.x]", "data.system.bundles"])
def test_references_that_would_cycle_or_widen_are_refused(admin_user, reference):
    source = f"package warden.org.loop\n\nimport rego.v1\n\ndeny contains \"x\" if {{\n\t{reference}\n}}\n"
    with pytest.raises(InvalidInput) as error:
        services.save_policy_module(path="loop.rego", source=source, by=admin_user)
    assert error.value.details[0]["line"] == 6


def test_organisation_denials_and_holds_reach_the_decision(admin_user):
    services.save_policy_module(path="refunds.rego", source=DENY_REFUNDS, by=admin_user)
    policy = RegoEngine().compile(library_modules(include_tests=False) | services.organisation_modules(), DATA)
    refund = {"agent": {"id": "support-bot"}, "action": {"tool": "refund", "args": {"amount": 5000}}}
    assert "big-refunds" in {r["rule"] for r in policy.decide(refund)["reasons"]}


def test_a_slow_module_is_refused_by_the_limited_worker(admin_user, settings):
    slow = "package warden.org.slow\n\nimport rego.v1\n\nn := count([i | some i in numbers.range(1, 400000000)])\n"
    with pytest.raises(InvalidInput, match="CPU time|memory"):
        services.save_policy_module(path="slow.rego", source=slow, by=admin_user)
    assert not PolicyModule.objects.exists()


def test_a_change_that_relaxes_a_decision_is_flagged(admin_user):
    services.save_policy_module(path="refunds.rego", source=DENY_REFUNDS, by=admin_user)
    tighter = services.save_policy_module(path="refunds.rego", source=DENY_REFUNDS.replace("1000", "500"), message="tighter", by=admin_user)
    assert tighter.relaxations == []
    looser = services.save_policy_module(
        path="refunds.rego", source=DENY_REFUNDS.replace("input.action.args.amount > 1000", "input.action.args.amount > 10000000"),
        message="looser", by=admin_user,
    )
    assert looser.relaxations
    assert {r["before"] for r in looser.relaxations} == {"deny"}
    assert "big-refunds" in looser.relaxations[0]["reasons_removed"]
    change = ObjectChange.objects.filter(object_id=str(looser.module.pk)).order_by("-time").first()
    assert "relaxes decisions" in change.message


def test_deleting_a_denial_is_flagged_as_a_relaxation(admin_user):
    revision = services.save_policy_module(path="refunds.rego", source=DENY_REFUNDS, by=admin_user)
    services.delete_policy_module(revision.module, by=admin_user, message="gone")
    change = ObjectChange.objects.filter(object_id=str(revision.module.pk), action="delete").get()
    assert "relaxes decisions" in change.message


@pytest.mark.parametrize("source", ["", "\x00", "package warden.org.x\n\ud800\n", "package", "package warden.org.x\nimport data\n"])
def test_hostile_sources_are_a_400_naming_the_source(admin_user, source):
    with pytest.raises(InvalidInput) as error:
        services.save_policy_module(path="hostile.rego", source=source, by=admin_user)
    assert error.value.field == "source"
    assert not PolicyModule.objects.exists()
