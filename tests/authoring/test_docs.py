"""The examples of docs/authoring.md: the request is drafted through the API and gives the
documented sentence and module, and the documented log-only decision is what the engine says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from agents_sdk.engine import RegoEngine
from controlplane.authoring.templates import module_source
from controlplane.policies.library import library_modules
from tests.accounts.factories import UserFactory

DOC = (Path(__file__).resolve().parents[2] / "docs" / "authoring.md").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, re.S)


@pytest.mark.django_db
def test_documented_request_gives_the_documented_sentence_module_and_passing_tests():
    client = APIClient()
    client.force_authenticate(UserFactory(roles=["policy_author"]))
    body = json.loads(blocks("json")[0])
    answer = client.post("/api/v1/authoring/rules/draft/", body, format="json")
    assert answer.status_code == 200, answer.content
    assert f"> {answer.json()['sentence']}" in DOC
    assert answer.json()["module"] == blocks("rego")[0]
    assert [r["passed"] for r in answer.json()["test_results"]] == [True, True]


def test_documented_log_only_decision_is_what_the_engine_decides():
    documented = json.loads(blocks("json")[1])
    params = {"name": "watch", "owner": "security@example.com", "tools": ["ticket_read"], "effect": "deny", "log_only": True}
    source = module_source("block_tool", params).replace('"rule": "watch"', '"rule": "watch-ticket-reads"')
    registry = {"agents": {"bot": {"status": "active", "scopes": []}}, "tools": {"ticket_read": {"scopes": []}}}
    policy = RegoEngine().compile(library_modules(include_tests=False) | {"org/watch.rego": source}, {"warden_registry": registry})
    decision = policy.decide({"agent": {"id": "bot"}, "action": {"tool": "ticket_read", "args": {}}})
    assert {k: decision[k] for k in ("allow", "effect", "reasons", "obligations")} == {
        k: documented[k] for k in ("allow", "effect", "reasons", "obligations")
    }
    assert (decision["log_only"]["allow"], decision["log_only"]["effect"]) == (False, "deny")
    assert [r["rule"] for r in decision["log_only"]["reasons"]] == [r["rule"] for r in documented["log_only"]["reasons"]]
