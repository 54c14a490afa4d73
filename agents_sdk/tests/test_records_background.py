"""Records signed off the hot path (``ActionSigner(spool_dir=...)``): complete, ordered and
verifiable, also after the agent process is killed mid-way."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from agents_sdk.errors import SigningError
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner, read_jsonl, record_form_problem
from agents_sdk.records.background import recover_spool
from agents_sdk.tests.conftest import REPO_ROOT, run_warden
from agents_sdk.verify import verify_records

CALLS = 40
KILLED_IN = 30  # the agent is killed while this call's tool runs

AGENT = textwrap.dedent(
    """
    import sys, time
    from agents_sdk.guard import Guard
    from agents_sdk.identity import AgentIdentity
    from agents_sdk.integrations.tests.policy import backend
    from agents_sdk.records import ActionSigner

    identity = AgentIdentity.load(sys.argv[1])
    sign = identity.sign
    def slow_sign(data):  # a slow signer: the kill finds records spooled but not yet signed
        time.sleep(0.02)
        return sign(data)
    object.__setattr__(identity, "sign", slow_sign)
    signer = ActionSigner(identity, spool_dir=sys.argv[2], keep_log=False)
    guard = Guard(identity, backend(), environment="prod", session_id="crash-1", signer=signer)

    @guard.tool
    def file_read(path: str) -> str:
        print("in-tool", path, flush=True)
        if path == "/srv/data/%d":
            time.sleep(120)
        return "contents"

    for i in range(%d):
        file_read(f"/srv/data/{i}")
        print("returned", i, flush=True)
    """
) % (KILLED_IN, CALLS)


def _kill_agent_mid_way(tmp_path: Path, identity_path: Path, spool: Path) -> tuple[set[int], set[int]]:
    """Run the agent, SIGKILL it inside call KILLED_IN; return (calls started, calls returned)."""
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    agent = subprocess.Popen([sys.executable, str(script), str(identity_path), str(spool)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    started, returned = set(), set()
    deadline = time.monotonic() + 120
    try:
        assert agent.stdout is not None
        for line in agent.stdout:
            word, value = line.split()
            if word == "in-tool":
                started.add(int(value.rsplit("/", 1)[1]))
                if value == f"/srv/data/{KILLED_IN}":
                    os.kill(agent.pid, signal.SIGKILL)
                    break
            else:
                returned.add(int(value))
            assert time.monotonic() < deadline, "the agent did not reach the call to kill"
    finally:
        agent.kill()
        _, errors = agent.communicate(timeout=30)
    assert agent.returncode == -signal.SIGKILL, errors
    return started, returned


def _calls(records: list[dict]) -> dict[int, list[str]]:
    """Kinds recorded per call number, from the intents' paths (each call's records follow its intent)."""
    calls: dict[int, list[str]] = {}
    current = None
    for record in records:
        if record["kind"] == "intent":
            current = int(record["payload"]["args"]["path"].rsplit("/", 1)[1])
        assert current is not None
        calls.setdefault(current, []).append(record["kind"])
    return calls


def test_records_of_a_killed_agent_are_complete_ordered_and_verifiable_after_recovery(tmp_path):
    identity = AgentIdentity.create("support-bot", "alice@example.com", ["read:files", "write:files"])
    identity_path = tmp_path / "support-bot.pem"
    identity.save(identity_path)
    spool = tmp_path / "spool"

    started, returned = _kill_agent_mid_way(tmp_path, identity_path, spool)
    assert started == set(range(KILLED_IN + 1)) and returned == set(range(KILLED_IN))

    [left] = list(spool.glob("*.spool"))
    log = left.with_suffix(".jsonl")
    signed_before = len(read_jsonl(log)) if log.exists() else 0
    expected = 3 * KILLED_IN + 2  # intent, decision, result per returned call; intent, decision of the killed one
    assert signed_before < expected, "the kill should leave records spooled but unsigned"

    recovery = run_warden("audit", "recover", str(spool), "--identity", str(identity_path))
    assert recovery.returncode == 0, recovery.stdout + recovery.stderr
    assert f"{expected - signed_before} records signed" in recovery.stdout
    assert not list(spool.glob("*.spool"))

    verified = run_warden("audit", "verify", str(log), "--public-key", str(identity_path) + ".json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.strip() == f"OK: {expected} records in 1 sessions verified"

    records = read_jsonl(log)
    assert [r["seq"] for r in records] == list(range(expected))
    calls = _calls(records)
    assert sorted(calls) == sorted(started)
    for call in returned:
        assert calls[call] == ["intent", "decision", "result"], call
    assert calls[KILLED_IN] == ["intent", "decision"]  # no tool runs without its intent on record
    assert len({r["record_id"] for r in records}) == expected

    # A second recovery finds nothing left to do, and signs nothing twice.
    again = run_warden("audit", "recover", str(spool), "--identity", str(identity_path))
    assert again.returncode == 0 and again.stdout == ""
    assert read_jsonl(log) == records


# -- the background signer in one process --------------------------------------------------


def _die(signer: ActionSigner) -> None:
    """Stop a signer as the death of its process would: its thread and descriptors (and flock) gone."""
    background = signer._background
    assert background is not None
    atexit.unregister(background.close)
    background._queue.put(None)
    background._thread.join()
    os.close(background._log_fd)
    os.close(background._fd)


def _fill(signer: ActionSigner, calls: int = 20) -> None:
    for i in range(calls):
        signer.append_many("s-1", (("intent", {"tool": "file_read", "args": {"i": i}}),
                                   ("decision", {"effect": "allow", "reasons": []})))
        signer.append("s-2", "result", {"summary": f"call {i}"})


def test_background_records_verify_and_session_log_waits_for_them(identity, tmp_path):
    delivered = []
    signer = ActionSigner(identity, spool_dir=tmp_path, sink=delivered.append)
    _fill(signer)
    log = signer.session_log()  # waits for the background thread
    assert len(log) == 60 and delivered == log
    assert verify_records(log, {identity.key_id: identity.public_key}).ok
    # The control plane's own form check (record ids in canonical lowercase UUID form).
    assert [record_form_problem(r, canonical_uuid=True) for r in log] == [None] * 60
    record = signer.sign_record("s-1", "output", {"output": "done"})  # still returns the signed record
    assert record["seq"] == 40 and record == signer.session_log()[-1]
    signer.close()
    assert read_jsonl(signer.log_path) == signer.session_log()
    assert not list(tmp_path.glob("*.spool"))
    with pytest.raises(SigningError, match="closed"):
        signer.append("s-1", "result", {"summary": "late"})


def test_recovery_signs_exactly_what_the_signer_would_have_signed(identity, tmp_path):
    signer = ActionSigner(identity, spool_dir=tmp_path / "live")
    _fill(signer)
    signer.flush()
    spool = signer._background.spool_path  # type: ignore[union-attr]
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(spool, copy / spool.name)
    signed = signer.log_path.read_bytes()  # type: ignore[union-attr]
    # The dead signer had written 25 records and half of the 26th to its log.
    lines = signed.splitlines(keepends=True)
    (copy / spool.with_suffix(".jsonl").name).write_bytes(b"".join(lines[:25]) + lines[25][:40])
    signer.close()

    [result] = recover_spool(copy, identity)
    assert (result.already_signed, result.recovered, result.problem) == (25, 35, None)
    assert (copy / spool.with_suffix(".jsonl").name).read_bytes() == signed  # byte for byte


def test_a_torn_last_spool_line_ends_the_spool(identity, tmp_path):
    signer = ActionSigner(identity, spool_dir=tmp_path / "live")
    _fill(signer, calls=2)
    signer.flush()
    spool = signer._background.spool_path  # type: ignore[union-attr]
    dead = tmp_path / "dead"
    dead.mkdir()
    (dead / spool.name).write_bytes(spool.read_bytes() + b"1700000000,result,5:\"s-2\"{\"summ")
    signer.close()
    [result] = recover_spool(dead, identity)
    assert result.recovered == 6
    assert verify_records(read_jsonl(dead / spool.with_suffix(".jsonl").name), {identity.key_id: identity.public_key}).ok


def test_a_live_signers_spool_is_left_alone_and_another_keys_is_refused(identity, other_identity, tmp_path):
    signer = ActionSigner(identity, spool_dir=tmp_path)
    _fill(signer, calls=1)
    assert recover_spool(tmp_path, identity) == []  # held by its flock
    assert recover_spool(tmp_path, other_identity) == []
    _die(signer)
    [refused] = recover_spool(tmp_path, other_identity)
    assert "not this identity's" in (refused.problem or "")
    assert list(tmp_path.glob("*.spool"))


def test_a_new_signer_on_the_directory_recovers_a_dead_one_into_its_log_and_sink(identity, tmp_path):
    dead = ActionSigner(identity, spool_dir=tmp_path)
    _fill(dead, calls=3)
    dead.flush()
    _die(dead)
    dead.log_path.unlink()  # type: ignore[union-attr]  # nothing signed had reached the log

    delivered = []
    fresh = ActionSigner(identity, spool_dir=tmp_path, sink=delivered.append)
    assert [r.recovered for r in fresh.recovered] == [9]
    assert [r["kind"] for r in delivered][:3] == ["intent", "decision", "result"]
    assert len(fresh.session_log()) == 9
    fresh.close()


def test_a_full_queue_makes_the_caller_wait_and_drops_nothing(identity, tmp_path):
    gate = threading.Event()
    sign = identity.sign

    def gated_sign(data: bytes) -> bytes:
        gate.wait(10)
        return sign(data)

    object.__setattr__(identity, "sign", gated_sign)
    signer = ActionSigner(identity, spool_dir=tmp_path, max_pending=4)
    done = threading.Event()

    def producer() -> None:
        for i in range(10):
            signer.append("s-1", "result", {"summary": str(i)})
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert not done.wait(0.5), "append should wait while 4 records are unsigned"
    gate.set()
    thread.join(10)
    assert done.is_set()
    assert [r["payload"]["summary"] for r in signer.session_log()] == [str(i) for i in range(10)]
    signer.close()


def test_spool_lines_are_appended_before_append_returns(identity, tmp_path):
    gate = threading.Event()
    sign = identity.sign
    object.__setattr__(identity, "sign", lambda data: (gate.wait(10), sign(data))[1])
    signer = ActionSigner(identity, spool_dir=tmp_path)
    signer.append("s-1", "intent", {"tool": "file_delete", "args": {"path": "/tmp/x"}})
    lines = signer._background.spool_path.read_bytes().splitlines()  # type: ignore[union-attr]
    assert json.loads(lines[0])["key_id"] == identity.key_id
    assert lines[1].endswith(b'"s-1"{"args":{"path":"/tmp/x"},"tool":"file_delete"}')
    assert signer.log_path.read_bytes() == b""  # type: ignore[union-attr]  # not signed yet
    gate.set()
    signer.close()
