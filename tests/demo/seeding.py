"""seed_demo run inside a test, its audit batch verified in-process as the embedded default
does (CI has a broker but no worker for these tests)."""

from pathlib import Path

from django.core.management import call_command


def seed_demo_verified_in_process(settings, tmp_path: Path, monkeypatch, times: int = 1) -> None:
    from controlplane.audit import verification as audit_verification
    from controlplane.core import tasks as core_tasks

    settings.VAR_DIR = tmp_path
    send_now = core_tasks.send_now
    monkeypatch.setattr(core_tasks, "send_now", lambda name, *args, queue=None: (
        audit_verification.verify_batch(*args) if name == "audit.verify_batch" else send_now(name, *args, queue=queue)
    ))
    for _ in range(times):
        call_command("seed_demo")
