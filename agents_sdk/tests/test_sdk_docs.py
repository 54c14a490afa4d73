"""docs/sdk.md's examples run as written and print what the page says."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

from agents_sdk.sidecar import parse_config
from agents_sdk.tests.signed_bundles import REPO_ROOT, RSASigner

PAGE = (REPO_ROOT / "docs" / "sdk.md").read_text("utf-8")


def example(name: str, language: str) -> str:
    return re.search(rf"<!-- example: {name} -->\n```{language}\n(.*?)```", PAGE, re.DOTALL).group(1)


def test_the_offline_guard_example_prints_what_the_page_shows():
    shown = re.search(r"It prints:\n\n```console\n(.*?)```", PAGE, re.DOTALL).group(1)
    result = subprocess.run(
        [sys.executable, "-c", example("offline", "python")],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown


def test_the_sidecar_config_on_the_page_is_a_valid_configuration(monkeypatch):
    monkeypatch.setenv("WARDEN_ENVIRONMENT_TOKEN", "t0ken")
    raw = yaml.safe_load(example("config", "yaml").replace("${WARDEN_ENVIRONMENT_TOKEN}", "t0ken"))
    raw["keys"]["warden"]["key"] = RSASigner().public_pem  # the page elides the key
    config = parse_config(raw)
    assert config.services["warden"].token == "t0ken"
    assert config.bundle.resource == "bundles/prod" and config.bundle.persist
    assert config.bundle.verification.keyid == "warden"
    assert config.decision_logs.service == config.status_service == "warden"
