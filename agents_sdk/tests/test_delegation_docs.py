"""docs/delegation.md's examples run as written and show what the code produces."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from agents_sdk.delegation import act_claims, authzen_subject, verify_chain
from agents_sdk.guard import EmbeddedBackend, Guard
from agents_sdk.tests.delegation_fixtures import Team
from agents_sdk.tests.signed_bundles import REPO_ROOT, library_modules

PAGE = (REPO_ROOT / "docs" / "delegation.md").read_text("utf-8")


def example(name: str, language: str) -> str:
    return re.search(rf"<!-- example: {name} -->\n```{language}\n(.*?)```", PAGE, re.DOTALL).group(1)


def facts_of_the_page() -> dict:
    team = Team()
    first = team.grant("orchestrator", "researcher", ["read:docs", "write:files"], "s-res", parent_session="s-orch",
                       constraints={"path_prefix": "/data/"})
    second = team.grant("researcher", "executor", ["read:docs"], "s-exe", parent=first,
                        constraints={"path_prefix": "/data/reports/"})
    facts = verify_chain([first, second], team.registry, agent="executor", session_id="s-exe").facts()
    return dict(facts, grants=["<hash of link 1>", "<hash of link 2>"], expires=1767000600)


def test_the_issue_example_prints_what_the_page_shows():
    shown = re.search(r"It prints:\n\n```console\n(.*?)```", PAGE, re.DOTALL).group(1)
    result = subprocess.run([sys.executable, "-c", example("issue", "python")], check=False, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown


def test_the_check_example_runs_against_the_guard():
    team = Team()
    guard = Guard(team.ids["executor"], EmbeddedBackend.from_modules(library_modules(), team.data()))
    token = team.token(scopes=["read:docs"])
    namespace = {"guard": guard, "token": token}
    exec(compile(example("check", "python"), "docs/delegation.md:check", "exec"), namespace)  # noqa: S102
    assert guard.check("doc_search", {"query": "q"}, session_id="s-exe", delegation=token).effect == "allow"


def test_the_facts_on_the_page_are_what_a_verifier_produces():
    assert json.loads(example("facts", "json")) == facts_of_the_page()


def test_the_interop_examples_are_what_the_functions_build():
    facts = facts_of_the_page()
    assert json.loads(example("act", "json")) == act_claims(facts)
    assert json.loads(example("authzen", "json")) == authzen_subject(facts)
