"""Queuing work never holds a request when the broker is down: one publish attempt with a
short connect timeout, a warning, and the periodic requeue jobs send the work later."""

import os
import socket
import subprocess
import sys

from tests.core.test_settings import ROOT

SCRIPT = """
import logging, time
logging.basicConfig(level=logging.WARNING)
import django; django.setup()
from django.db import transaction
from controlplane.core.tasks import enqueue
started = time.monotonic()
with transaction.atomic():
    enqueue("audit.verify_batch", "a-batch-id")
print(f"committed {time.monotonic() - started:.2f}")
"""


def test_enqueue_with_the_broker_down_returns_after_one_attempt_and_says_what_happens_next(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on: the broker is down
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARDEN_", "DATABASE_URL", "REDIS_URL"))}
    env.update({"DJANGO_SETTINGS_MODULE": "controlplane.settings", "WARDEN_VAR_DIR": str(tmp_path),
                "REDIS_URL": f"redis://127.0.0.1:{dead}/0"})
    # The subprocess timeout only bounds a hang (before: 19 s of retries per upload).
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("committed")
    assert "could not queue audit.verify_batch('a-batch-id',)" in result.stderr
    assert "the periodic requeue picks it up" in result.stderr
    assert result.stderr.count("could not queue") == 1
    print(result.stdout.strip())
