"""docs/sdk.md's examples run as written, from a clean directory, twice in a row, and
print what the page says. (The examples that need a control plane run in
tests/sdk/test_sdk_docs_live.py against a live one.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from agents_sdk.sidecar import parse_config
from agents_sdk.tests.signed_bundles import REPO_ROOT, RSASigner

PAGE = (REPO_ROOT / "docs" / "sdk.md").read_text("utf-8")


def example(name: str, language: str) -> str:
    found = re.search(rf"<!-- example: {name} -->\n```{language}\n(.*?)```", PAGE, re.DOTALL)
    assert found, f"docs/sdk.md has no {language} example {name!r}"
    return found.group(1)


def printed_after(name: str) -> str:
    """The ``It prints:`` block that follows example ``name``."""
    after = PAGE[PAGE.index(f"<!-- example: {name} -->"):]
    return re.search(r"It prints:\n\n```console\n(.*?)```", after, re.DOTALL).group(1)


def run_python(code: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-c", code], check=False, cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**base, **(env or {})})


def test_the_offline_guard_example_prints_what_the_page_shows_twice_from_a_clean_directory(tmp_path):
    env = {"WARDEN_POLICY_DIR": str(REPO_ROOT / "rego" / "warden")}
    for _ in range(2):
        result = run_python(example("offline", "python"), tmp_path, env)
        assert result.returncode == 0, result.stderr
        assert result.stdout == printed_after("offline")
        assert result.stderr == ""  # nothing at exit either (no "Engine is unsendable")


def test_a_wrong_policy_directory_is_an_error_not_an_empty_policy(tmp_path):
    result = run_python(example("offline", "python"), tmp_path, {"WARDEN_POLICY_DIR": "no/such/dir"})
    assert result.returncode == 1 and "FileNotFoundError: no Rego modules at no/such/dir" in result.stderr


def test_the_sidecar_config_on_the_page_is_a_valid_configuration(monkeypatch):
    monkeypatch.setenv("WARDEN_ENVIRONMENT_TOKEN", "t0ken")
    raw = yaml.safe_load(example("config", "yaml").replace("${WARDEN_ENVIRONMENT_TOKEN}", "t0ken"))
    raw["keys"]["warden"]["key"] = RSASigner().public_pem  # the page elides the key
    config = parse_config(raw)
    assert config.services["warden"].token == "t0ken"
    assert config.bundle.resource == "bundles/prod" and config.bundle.persist
    assert config.bundle.verification.keyid == "warden"
    assert config.decision_logs.service == config.status_service == "warden"
