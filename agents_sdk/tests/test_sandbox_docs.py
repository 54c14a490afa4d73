"""docs/sandbox.md's examples run as written and print what the page says."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from agents_sdk.sandbox import Permissions, profile_problem
from agents_sdk.tests.sandbox_fixtures import make_host_tree, remove_host_tree
from agents_sdk.tests.signed_bundles import REPO_ROOT
from agents_sdk.tests.test_sandbox_governed import governed

PAGE = (REPO_ROOT / "docs" / "sandbox.md").read_text("utf-8")


def example(name: str, language: str) -> str:
    return re.search(rf"<!-- example: {name} -->\n```{language}\n(.*?)```", PAGE, re.DOTALL).group(1)


def test_the_run_example_prints_what_the_page_shows():
    shown = re.search(r"It prints:\n\n```console\n(.*?)```", PAGE, re.DOTALL).group(1)
    result = subprocess.run(
        [sys.executable, "-c", example("run", "python")],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown


def test_the_registry_entry_on_the_page_is_a_valid_profile():
    entry = json.loads(example("registry-entry", "json"))
    assert profile_problem(entry["sandbox"]) is None
    permissions = Permissions.from_registry(entry)
    assert permissions.network_access == ("pypi.org", "*.pythonhosted.org")
    assert permissions.limits.processes == 32


def test_the_guard_example_runs_decided_sandboxed_and_signed():
    tree = make_host_tree()
    try:
        guard, _, signer = governed(tree)
        namespace = {"guard": guard}
        exec(compile(example("guard", "python"), "docs/sandbox.md:guard", "exec"), namespace)  # noqa: S102
        assert namespace["listing"].stdout == b"/usr/bin/python3\n"
        assert namespace["four"].stdout == b"4\n"
        assert namespace["run_python"]("print(6 * 7)") == "42\n\n[exit status 0]"
        results = [r["payload"] for r in signer.session_log("s-1") if r["kind"] == "result"]
        assert [payload["tool"] for payload in results] == ["shell", "run_python", "run_python"]
        shown = json.loads(example("record", "json").replace("9c1e…", "0" * 64))
        actual = results[1]
        assert set(actual) == set(shown) and set(actual["sandbox"]) == set(shown["sandbox"])
        assert actual["sandbox"]["command"] == shown["sandbox"]["command"]
        assert actual["summary"] == shown["summary"]
    finally:
        remove_host_tree(tree)
