"""Impact previews: a template change that relaxes a rule is counted and sampled from the
recorded traffic, and under four-eyes it needs a second person before publishing."""

from __future__ import annotations

import pytest

from controlplane.approvals.models import ApprovalRequest
from controlplane.authoring import previews, services
from controlplane.authoring.models import PreviewStatus
from controlplane.bundles import services as bundle_services
from controlplane.bundles.models import Environment
from controlplane.core.exceptions import ConflictError
from tests.authoring.conftest import payment, record_decisions

pytestmark = pytest.mark.django_db


def cap(limit: int) -> dict:
    return {
        "name": "cap_payments", "owner": "risk@example.com", "tools": ["pay_invoice"], "effect": "deny",
        "when": {"amount_over": {"limit": limit, "currency": "EUR"}},
    }


EXAMPLES = [
    {"description": "20,000 EUR is blocked", "expect": "deny", "input": payment(20000)},
    {"description": "100 EUR passes", "expect": "pass", "input": payment(100)},
]


def test_a_relaxing_template_change_is_flagged_with_counts_and_samples(finance_env, author):
    services.save_authored_rule(template="block_tool", params=cap(1000), examples=EXAMPLES, by=author)
    bundle_services.publish_policies(finance_env, by=author)
    small = [payment(500 + i) for i in range(60)]  # allowed before and after
    middle = [payment(3000 + i) for i in range(30)]  # denied before, allowed after the change
    large = [payment(8000)] * 10  # denied before and after (one distinct input, ten records)
    record_decisions(finance_env, small + middle + large)

    rule = services.save_authored_rule(template="block_tool", params=cap(5000), examples=EXAMPLES, by=author)
    assert "relaxes decisions" in rule.module.current_revision.message  # the save-time replay flags it too
    preview = previews.request_impact_preview(Environment.objects.get(pk=finance_env.pk), by=author)
    preview = previews.run_impact_preview(preview)

    assert preview.status == PreviewStatus.DONE and preview.progress == 100
    assert preview.sources == {"decision_logs": 100, "intents": 0, "library": previews.LIBRARY_INPUTS}
    assert preview.total == 100 + previews.LIBRARY_INPUTS
    assert preview.changes["transitions"] == {"deny->allow": 30}
    assert preview.relaxations == 30
    assert preview.changes["by_rule"] == {"cap-payments": 30}
    assert preview.changes["by_agent"] == {"finance-bot": 30}
    assert preview.changes["by_tool"] == {"pay_invoice": 30}
    assert preview.changes["new_holds"] == 0
    assert len(preview.samples) == 5
    for sample in preview.samples:
        assert sample["relaxation"] is True and sample["source"] == "decision_log"
        assert sample["input"] in middle  # the exact recorded input
        assert sample["before"]["effect"] == "deny" and sample["after"]["effect"] == "allow"
        assert sample["rules_removed"] == ["cap-payments"]


def test_a_tightening_change_counts_new_denials_and_is_no_relaxation(finance_env, author):
    record_decisions(finance_env, [payment(20000)] * 7 + [payment(10)] * 3)
    services.save_authored_rule(template="block_tool", params=cap(1000), examples=EXAMPLES, by=author)
    preview = previews.run_impact_preview(previews.request_impact_preview(finance_env, by=author))
    transitions = dict(preview.changes["transitions"])
    assert transitions.pop("allow->deny") == 7
    # Library test inputs denied for other reasons that now name cap-payments too.
    assert set(transitions) <= {"deny->deny"}
    assert all(s["source"] == "library" for s in preview.samples if s["transition"] == "deny->deny")
    (sample,) = [s for s in preview.samples if s["transition"] == "allow->deny"]
    assert sample["records"] == 7 and sample["rules_added"] == ["cap-payments"]
    # No recorded decision relaxes. Known engine quirk (reported): with the library alone,
    # a few corpus inputs carry approval-grant-rejected although approval_required is empty;
    # with any organisation module they do not. Nothing else may show up as a relaxation.
    relaxed = [s for s in preview.samples if s["relaxation"]]
    assert all(s["source"] == "library" and s["rules_removed"] == ["approval-grant-rejected"] for s in relaxed)
    assert preview.relaxations == len(relaxed) <= 5


def test_relaxations_need_a_second_person_under_four_eyes(author, reviewer, finance_env):
    prod = bundle_services.create_environment(name="prod", by=author)  # four-eyes by default (approvals app)
    services.save_authored_rule(template="block_tool", params=cap(1000), examples=EXAMPLES, by=author)
    bundle_services.publish_policies(prod, by=author)
    record_decisions(prod, [payment(3000)])
    services.save_authored_rule(template="block_tool", params=cap(5000), examples=EXAMPLES, by=author)
    preview = previews.run_impact_preview(previews.request_impact_preview(prod, by=author))
    assert preview.relaxations == 1 and previews.needs_second_person(preview)

    with pytest.raises(ConflictError, match="second person"):
        previews.publish_previewed(preview, by=author)
    with pytest.raises(ConflictError, match="four-eyes"):
        previews.release_relaxations(preview, by=author)
    previews.release_relaxations(preview, by=reviewer)
    preview.refresh_from_db()
    assert preview.second_person == reviewer and not previews.needs_second_person(preview)
    held = previews.publish_previewed(preview, by=author)
    assert isinstance(held, ApprovalRequest)  # prod's publish itself still waits for an approver
    assert "1 decision(s) less strict" in held.release["message"]


def test_a_preview_of_stale_policies_cannot_be_published(finance_env, author):
    preview = previews.run_impact_preview(previews.request_impact_preview(finance_env, by=author))
    services.save_authored_rule(template="block_tool", params=cap(1000), examples=EXAMPLES, by=author)
    with pytest.raises(ConflictError, match="changed after this preview"):
        previews.publish_previewed(preview, by=author)


def test_examples_that_do_not_hold_are_refused(finance_env, author):
    wrong = [{"description": "20,000 EUR passes", "expect": "pass", "input": payment(20000)}]
    with pytest.raises(Exception, match="1 example\\(s\\) do not hold"):
        services.save_authored_rule(template="block_tool", params=cap(1000), examples=wrong, by=author)

