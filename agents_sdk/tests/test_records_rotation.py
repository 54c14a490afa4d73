"""Background signing with a sink starts new spool and log segments (``rotate_bytes``): the files
stay bounded, the chains continue across segments, and a crash at any step of a rotation loses
and repeats nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner, write_jsonl
from agents_sdk.records.background import recover_spool
from agents_sdk.tests.conftest import REPO_ROOT, run_warden
from agents_sdk.verify import verify_records

ROTATE = 4096  # bytes: a rotation every ~10 records


def _summaries(records: list[dict]) -> list[str]:
    return [r["payload"]["summary"] for r in records]


def test_a_sinks_segments_stay_bounded_and_the_chains_continue_across_them(identity, tmp_path):
    delivered: list[dict] = []
    signer = ActionSigner(identity, spool_dir=tmp_path, sink=delivered.append, keep_log=False, rotate_bytes=ROTATE)
    largest = 0
    for i in range(300):
        signer.append(f"s-{i % 3}", "result", {"summary": f"call {i}"})
        if i % 20 == 19:
            assert signer.flush(timeout=60)
            largest = max(largest, sum(p.stat().st_size for p in tmp_path.glob("*.jsonl")))
    record = signer.sign_record("s-1", "output", {"output": "done"})  # after many rotations
    assert record["seq"] == 100
    stats = signer.stats()
    signer.close()

    assert stats["rotations"] >= 10 and stats["restarts"] == 0 and stats["error"] is None
    # A rotation follows a report after the log passed ROTATE, in the agent's watcher thread, which
    # may lag a window or two of 20 records (~450 bytes each) under load. Unrotated: ~130 kB.
    assert largest < 50_000, largest
    assert len(list(tmp_path.glob("*.jsonl"))) == 1 and not list(tmp_path.glob("*.spool"))

    assert _summaries(delivered[:-1]) == [f"call {i}" for i in range(300)] and delivered[-1] == record
    assert verify_records(delivered, {identity.key_id: identity.public_key}).ok  # seq and prev_hash links
    for session in ("s-0", "s-1", "s-2"):
        assert [r["seq"] for r in delivered if r["session_id"] == session] == list(range(100 + (session == "s-1")))
    assert len({r["record_id"] for r in delivered}) == 301  # each segment has its own salt


def test_without_a_sink_the_log_is_the_output_and_is_not_rotated(identity, tmp_path):
    signer = ActionSigner(identity, spool_dir=tmp_path, rotate_bytes=ROTATE)
    for i in range(60):
        signer.append("s-1", "result", {"summary": f"call {i}"})
    assert len(signer.session_log()) == 60
    assert signer.stats()["rotations"] == 0
    signer.close()
    assert len(list(tmp_path.glob("*.jsonl"))) == 1


AGENT = (
    textwrap.dedent(
        """
    import json, os, pathlib, signal, sys
    from agents_sdk.identity import AgentIdentity
    from agents_sdk.records import ActionSigner
    from agents_sdk.records import background
    from agents_sdk.records.background import BackgroundSigning

    identity = AgentIdentity.load(sys.argv[1])
    spool, mode, out = sys.argv[2], sys.argv[3], open(sys.argv[4], "ab", buffering=0)

    def die():  # the agent and its signer processes, as a container's end would
        os.killpg(0, signal.SIGKILL)

    # Crash points inside the first rotation (BackgroundSigning._maybe_rotate's steps).
    open_segment, start_process, unlink = background.open_segment, BackgroundSigning._start_process, pathlib.Path.unlink

    def patched_open_segment(directory, agent, key_id, heads):
        opened = open_segment(directory, agent, key_id, heads)
        if heads and mode == "segment":
            die()  # the new segment exists, the old signer still runs
        return opened

    def patched_start_process(self):
        start_process(self)
        if self._base and mode == "started":
            die()  # the new signer runs, the old spool is still there

    def patched_unlink(self, *args, **kwargs):
        if self.suffix == ".jsonl" and mode == "unlinked":
            die()  # the old spool is gone, its log not yet
        return unlink(self, *args, **kwargs)

    background.open_segment = patched_open_segment
    BackgroundSigning._start_process = patched_start_process
    pathlib.Path.unlink = patched_unlink

    signer = ActionSigner(identity, spool_dir=spool, keep_log=False, rotate_bytes=%d,
                          sink=lambda record: out.write(json.dumps(record).encode() + b"\\n"))
    i = 0
    while True:
        signer.append(f"s-{i %% 3}", "result", {"summary": f"call {i}"})
        print("returned", i, flush=True)
        i += 1
        if i %% 10 == 0:
            signer.flush()  # an agent between bursts: the signer catches up and may rotate
        if mode == "appended" and signer.stats()["rotations"] >= 1:
            signer.flush()
            os.kill(signer.stats()["signer_pid"], signal.SIGSTOP)  # the new segment's records stay unsigned
            for _ in range(7):
                signer.append(f"s-{i %% 3}", "result", {"summary": f"call {i}"})
                print("returned", i, flush=True)
                i += 1
            die()
        if i > 2000:
            sys.exit("no rotation happened")
    """
    )
    % ROTATE
)


@pytest.mark.parametrize("mode", ["segment", "started", "unlinked", "appended"])
def test_a_crash_at_any_step_of_a_rotation_loses_and_repeats_nothing(tmp_path, mode):
    identity = AgentIdentity.create("support-bot", "alice@example.com", ["read:files"])
    identity_path = tmp_path / "support-bot.pem"
    identity.save(identity_path)
    spool, sink, script = tmp_path / "spool", tmp_path / "sink.jsonl", tmp_path / "agent.py"
    script.write_text(AGENT)
    agent = subprocess.Popen(
        [sys.executable, str(script), str(identity_path), str(spool), mode, str(sink)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        start_new_session=True,
    )
    try:
        output, errors = agent.communicate(timeout=120)
    finally:
        agent.kill()
    assert agent.returncode == -signal.SIGKILL, errors
    returned = len(output.splitlines())
    # The signer processes died with the agent (same process group): wait until their flocks are gone.
    deadline = time.monotonic() + 30
    while subprocess.run(["pgrep", "-g", str(agent.pid)], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    # Where the crash left the files (spools, logs): it happened inside the rotation, not at exit.
    left = (len(list(spool.glob("*.spool"))), len(list(spool.glob("*.jsonl"))))
    assert left == {"segment": (2, 2), "started": (2, 2), "unlinked": (1, 2), "appended": (1, 1)}[mode]

    delivered = [json.loads(line) for line in sink.read_bytes().splitlines()]
    recovered: list[dict] = []
    results = recover_spool(spool, identity, lambda session_id, line: recovered.append(json.loads(line)))
    assert all(r.problem is None for r in results), results
    assert not list(spool.glob("*.spool"))
    if mode == "appended":
        assert len(recovered) == 7  # the stopped signer's spool, signed from the heads in its header
    else:
        assert recovered == []  # the old segment was fully delivered: nothing signed twice

    records = delivered + recovered
    count = len(records)
    assert returned <= count <= returned + 1  # every returned call; at most the one being appended
    assert _summaries(records) == [f"call {i}" for i in range(count)]
    assert len({r["record_id"] for r in records}) == count
    for session in ("s-0", "s-1", "s-2"):
        seqs = [r["seq"] for r in records if r["session_id"] == session]
        assert seqs == list(range(len(seqs)))
    combined = tmp_path / "combined.jsonl"
    write_jsonl(combined, records)
    verified = run_warden("audit", "verify", str(combined), "--public-key", str(identity_path) + ".json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
