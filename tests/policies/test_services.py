"""Organisation policies: compile on save, revisions with diffs, tests gate, tool catalog."""

import pytest

from controlplane.changelog.models import ObjectChange
from controlplane.core.exceptions import ConflictError, InvalidInput
from controlplane.policies import services
from controlplane.policies.models import PolicyModule

pytestmark = pytest.mark.django_db

DENY_REFUNDS = """package warden.org.refunds

import rego.v1

# METADATA
# title: No refunds over 1000
# custom:
#   severity: high
#   controls: [soc2.CC6.1]
deny contains {"rule": "big-refunds", "message": "Refunds over 1000 need finance", "controls": ["soc2.CC6.1"]} if {
    input.action.tool == "refund"
    input.action.args.amount > 1000
}
"""


def test_saving_a_module_creates_revision_one_and_logs_it(admin_user):
    revision = services.save_policy_module(path="finance/refunds.rego", source=DENY_REFUNDS, message="first", by=admin_user)
    assert revision.number == 1
    assert revision.module.package == "warden.org.refunds"
    assert revision.author == admin_user
    assert revision.diff.startswith("--- a/finance/refunds.rego")
    change = ObjectChange.objects.get(object_id=str(revision.module.pk))
    assert change.action == "create"
    assert change.message == "first"


def test_second_save_adds_a_revision_with_a_diff(admin_user):
    services.save_policy_module(path="refunds.rego", source=DENY_REFUNDS, by=admin_user)
    revision = services.save_policy_module(
        path="refunds.rego", source=DENY_REFUNDS.replace("1000", "500"), message="tighter", by=admin_user
    )
    assert revision.number == 2
    assert "-    input.action.args.amount > 1000" in revision.diff
    assert "+    input.action.args.amount > 500" in revision.diff
    assert PolicyModule.objects.get(path="refunds.rego").current_revision == revision


def test_identical_source_is_a_conflict(admin_user):
    services.save_policy_module(path="refunds.rego", source=DENY_REFUNDS, by=admin_user)
    with pytest.raises(ConflictError):
        services.save_policy_module(path="refunds.rego", source=DENY_REFUNDS, by=admin_user)


def test_syntax_error_is_refused_with_file_line_and_column(admin_user):
    broken = "package warden.org.acme\n\nimport rego.v1\n\nallow if {\n    input.x ==\n}\n"
    with pytest.raises(InvalidInput) as error:
        services.save_policy_module(path="acme.rego", source=broken, by=admin_user)
    assert error.value.field == "source"
    [detail, *_] = error.value.details
    assert detail["file"] == "org/acme.rego"
    assert detail["line"] in (6, 7)
    assert detail["column"] > 0
    assert error.value.message.startswith(f"org/acme.rego:{detail['line']}:{detail['column']}:")
    assert not PolicyModule.objects.exists()


def test_unsafe_variable_is_refused(admin_user):
    unsafe = "package warden.org.acme\n\nimport rego.v1\n\nallow if {\n    x == y\n}\n"
    with pytest.raises(InvalidInput) as error:
        services.save_policy_module(path="acme.rego", source=unsafe, by=admin_user)
    assert error.value.details[0]["file"] == "org/acme.rego"


def test_module_in_the_library_package_is_refused(admin_user):
    # `decision` is a complete rule of the library: organisation policy may not touch it.
    clash = 'package warden\n\nimport rego.v1\n\ndecision := {"allow": true}\n'
    with pytest.raises(InvalidInput, match="package warden is not allowed") as error:
        services.save_policy_module(path="clash.rego", source=clash, by=admin_user)
    assert error.value.field == "source"


@pytest.mark.parametrize("source, message", [("allow := true\n", "package"), ("x" * (300 * 1024), "KiB")])
def test_bad_source_is_refused(admin_user, source, message):
    with pytest.raises(InvalidInput, match=message):
        services.save_policy_module(path="bad.rego", source=source, by=admin_user)


def test_delete_keeps_revisions_and_leaves_the_module_out(admin_user):
    revision = services.save_policy_module(path="refunds.rego", source=DENY_REFUNDS, by=admin_user)
    services.delete_policy_module(revision.module, by=admin_user)
    assert "org/refunds.rego" not in services.organisation_modules()
    assert revision.module.revisions.count() == 1
    with pytest.raises(ConflictError):
        services.delete_policy_module(revision.module, by=admin_user)


def test_organisation_tests_run_with_the_library(admin_user):
    services.save_policy_module(path="refunds.rego", source=DENY_REFUNDS, by=admin_user)
    failing = (
        "package warden.org_test.refunds\n\nimport rego.v1\n\n"
        'test_refund_allowed if {\n    data.warden.decision.allow with input as {"action": {"tool": "refund"}}\n}\n'
    )
    services.save_policy_module(path="refunds_test.rego", source=failing, by=admin_user)
    from controlplane.policies.library import library_modules

    report = services.run_policy_tests(library_modules() | services.organisation_modules())
    assert report.failed == 1
    assert report.failures[0].name == "test_refund_allowed"
    assert report.passed >= 40


def test_test_reports_are_reused_only_for_the_same_module_set(admin_user, monkeypatch):
    """Running the same policies again answers from the report of the first run; any change to
    a module (here, a failing test saved after a passing run) runs the tests again."""
    from controlplane.policies.library import library_modules

    from collections import OrderedDict

    monkeypatch.setattr(services, "_TEST_REPORTS", OrderedDict())  # nothing from earlier tests
    runs = []
    real = services.ENGINE.run_tests
    monkeypatch.setattr(services.ENGINE, "run_tests", lambda modules, data=None: runs.append(1) or real(modules, data))
    services.save_policy_module(path="refunds.rego", source=DENY_REFUNDS, by=admin_user)
    first = services.run_policy_tests(library_modules() | services.organisation_modules())
    again = services.run_policy_tests(library_modules() | services.organisation_modules())
    assert first.failed == again.failed == 0 and first.passed == again.passed
    assert len(runs) == 1
    again.results.clear()  # a caller's copy: the cached report stays whole
    assert services.run_policy_tests(library_modules() | services.organisation_modules()).passed == first.passed

    failing = (
        "package warden.org_test.refunds\n\nimport rego.v1\n\n"
        'test_refund_allowed if {\n    data.warden.decision.allow with input as {"action": {"tool": "refund"}}\n}\n'
    )
    services.save_policy_module(path="refunds_test.rego", source=failing, by=admin_user)
    after = services.run_policy_tests(library_modules() | services.organisation_modules())
    assert after.failed == 1 and len(runs) == 2


def test_tool_changes_are_logged(admin_user):
    tool = services.create_tool(name="refund", scopes=["write:payments"], category="payment", by=admin_user)
    services.update_tool(tool, irreversible=True, by=admin_user)
    actions = list(ObjectChange.objects.filter(object_id=str(tool.pk)).order_by("time").values_list("action", flat=True))
    assert actions == ["create", "update"]
    with pytest.raises(ConflictError):
        services.create_tool(name="refund", by=admin_user)
