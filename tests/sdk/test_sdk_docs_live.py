"""docs/sdk.md's control-plane examples against a live control plane: the `warden` commands
and the Python example run from a clean directory, twice in a row, print what the page
says each time, leave one agent (not one per run), and their records reach the control
plane."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from agents_sdk.tests.test_sdk_docs import example, printed_after
from controlplane.audit.models import Batch
from controlplane.bundles import services as bundle_services
from controlplane.identity.models import Agent

pytestmark = pytest.mark.django_db(transaction=True)

REPO_ROOT = Path(__file__).resolve().parents[2]


def environment(control_plane, api_token, prod, tmp_path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    # `warden` as the installed console script would be (this interpreter, this checkout).
    (bin_dir / "warden").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m agents_sdk "$@"\n')
    (bin_dir / "warden").chmod(0o755)
    return {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO_ROOT),
        "WARDEN_URL": control_plane.url,
        "WARDEN_API_TOKEN": api_token,
        "WARDEN_ENVIRONMENT_TOKEN": prod.token,
    }


def run_console(block: str, cwd: Path, env: dict[str, str]) -> list[str]:
    out = []
    for line in block.splitlines():
        if line.startswith("$ "):
            done = subprocess.run(["sh", "-c", line[2:]], cwd=cwd, env=env, capture_output=True, text=True,
                                  timeout=60, check=False)
            assert done.returncode == 0, (line, done.stdout, done.stderr)
            out.append(done.stdout)
    return out


def test_the_cli_and_control_plane_examples_run_twice_from_a_clean_directory(
    control_plane, admin, api_token, prod, tmp_path
):
    bundle_services.publish_policies(prod, by=admin)
    work = tmp_path / "clean"
    work.mkdir()
    env = environment(control_plane, api_token, prod, tmp_path)
    for attempt in (1, 2):
        outputs = run_console(example("cli", "console"), work, env)
        assert ("created identity docs-bot" if attempt == 1 else "kept identity docs-bot") in outputs[0]
        assert ("agent docs-bot: registered" if attempt == 1 else "already registered") in outputs[1]
        done = subprocess.run([sys.executable, "-c", example("control-plane", "python")], cwd=work, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout == printed_after("control-plane"), (attempt, done.stdout, done.stderr)
        assert "unsendable" not in done.stderr
    assert Agent.objects.filter(name="docs-bot").count() == 1
    assert Agent.objects.get(name="docs-bot").keys.count() == 1
    # Two runs, two sessions, two records each: every batch reached the control plane.
    assert sum(batch.record_count for batch in Batch.objects.all()) == 4
