"""README.md's shell tour, run as written against a live server seeded with the demo data.

Every ```sh block runs in order in one bash (the first sets ADMIN, AUDITOR and API), from a
directory whose var/ is the server's and whose .venv is the project's. `curl` is wrapped to
print each answer's status, so a call that quietly failed fails here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
STATUS = "@@status "

pytestmark = pytest.mark.django_db(transaction=True)


def tour_blocks() -> list[str]:
    """The shell blocks of the tour (the block of `make` commands before it is not one)."""
    return [block for block in re.findall(r"```sh\n(.*?)```", README, re.S) if "make run" not in block]


@pytest.mark.django_db(transaction=False)
def test_the_readme_tour_is_a_script_of_its_shell_blocks():
    blocks = tour_blocks()
    assert len(blocks) >= 8
    assert "API=http://127.0.0.1:8000/api/v1" in blocks[0]
    assert sum(block.count("curl ") for block in blocks) >= 15


def test_the_readme_tour_runs_as_written(live_server, settings, tmp_path, monkeypatch):
    from controlplane.audit import verification as audit_verification
    from controlplane.core import tasks as core_tasks

    var = tmp_path / "var"
    var.mkdir()
    settings.VAR_DIR = var
    # Verify in-process, as the embedded default does (this test runs no Celery worker).
    send_now = core_tasks.send_now
    monkeypatch.setattr(core_tasks, "send_now", lambda name, *args, queue=None: (
        audit_verification.verify_batch(*args) if name == "audit.verify_batch" else send_now(name, *args, queue=queue)
    ))
    call_command("seed_demo")
    workdir = tmp_path / "checkout"
    workdir.mkdir()
    (workdir / "var").symlink_to(var)
    (workdir / ".venv").symlink_to(Path(sys.executable).parents[1])

    script = "\n".join(tour_blocks()).replace("http://127.0.0.1:8000", live_server.url)
    # Each answer's status goes to stderr, so bodies stay as the reader sees them (and pipes work).
    wrapper = f"curl() {{ command curl -w '%{{stdout}}\\n%{{stderr}}{STATUS}%{{http_code}}\\n' \"$@\"; }}\n"
    done = subprocess.run(["bash", "-c", wrapper + script], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    statuses = [int(line[len(STATUS):]) for line in done.stderr.splitlines() if line.startswith(STATUS)]
    calls = sum(block.count("curl ") for block in tour_blocks())
    # The call with its own -w prints its code to stdout instead: the auditor's 403.
    assert len(statuses) == calls - 1, (statuses, done.stdout, done.stderr)
    assert "403" in done.stdout.split(), "an auditor may not resume an agent"
    assert [status for status in statuses if status >= 300] == [400], statuses
    shown = json.loads(re.search(r"# (\{\"scopes\".*\})\n", README).group(1))
    answers = [answer for answer in map(_json_or_none, done.stdout.splitlines()) if answer is not None]
    assert shown in answers, "the README shows the answer the API gives to bad input"
    assert '"count": 3,' in done.stdout, "the environments, pretty-printed by json.tool"
    # What the tour did is in the database: the agent, its key, the module and the publication.
    from controlplane.identity.models import Agent
    from controlplane.policies.models import PolicyModule

    agent = Agent.objects.get(name="invoice-bot")
    assert agent.status == "active" and agent.keys.filter(revoked_at__isnull=True).count() == 1
    assert PolicyModule.objects.filter(path="security/paste-sites.rego").exists()


def _json_or_none(line: str):
    try:
        return json.loads(line)
    except ValueError:
        return None  # the pretty-printed lines of json.tool, or a status code
