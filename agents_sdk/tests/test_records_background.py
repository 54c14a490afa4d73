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
from agents_sdk.records.background import _ASLEEP, recover_spool
from agents_sdk.records.spool import ed25519_signer
from agents_sdk.tests.conftest import REPO_ROOT, run_warden
from agents_sdk.verify import verify_records

CALLS = 40
STOPPED_AT = 20  # the agent stops its signer process here: a signer that fell behind
KILLED_IN = 30  # the agent is killed while this call's tool runs

AGENT = textwrap.dedent(
    """
    import os, signal, sys, time
    from agents_sdk.guard import Guard
    from agents_sdk.identity import AgentIdentity
    from agents_sdk.integrations.tests.policy import backend
    from agents_sdk.records import ActionSigner

    identity = AgentIdentity.load(sys.argv[1])
    signer = ActionSigner(identity, spool_dir=sys.argv[2], keep_log=False)
    guard = Guard(identity, backend(), environment="prod", session_id="crash-1", signer=signer)
    print("signer", signer.stats()["signer_pid"], flush=True)

    @guard.tool
    def file_read(path: str) -> str:
        print("in-tool", path, flush=True)
        if path == "/srv/data/%d":
            time.sleep(120)
        return "contents"

    for i in range(%d):
        if i == %d and sys.argv[3] == "stop-signer":
            signer.flush()
            os.kill(signer.stats()["signer_pid"], signal.SIGSTOP)
        file_read(f"/srv/data/{i}")
        print("returned", i, flush=True)
    """
) % (KILLED_IN, CALLS, STOPPED_AT)
EXPECTED = 3 * KILLED_IN + 2  # intent, decision, result per returned call; intent, decision of the killed one


def _kill_agent_mid_way(
    tmp_path: Path, identity_path: Path, spool: Path, *, with_signer: bool
) -> tuple[set[int], set[int], int]:
    """Run the agent, SIGKILL it inside call KILLED_IN (and its stopped signer process with it, as a
    container's end or a machine's would: ``with_signer``); return (calls started, calls returned,
    signer pid)."""
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    mode = "stop-signer" if with_signer else "run"
    agent = subprocess.Popen(
        [sys.executable, str(script), str(identity_path), str(spool), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    started, returned, signer_pid = set(), set(), 0
    deadline = time.monotonic() + 120
    try:
        assert agent.stdout is not None
        for line in agent.stdout:
            word, value = line.split()
            if word == "signer":
                signer_pid = int(value)
            elif word == "in-tool":
                started.add(int(value.rsplit("/", 1)[1]))
                if value == f"/srv/data/{KILLED_IN}":
                    if with_signer:
                        os.killpg(agent.pid, signal.SIGKILL)
                    else:
                        os.kill(agent.pid, signal.SIGKILL)
                    break
            else:
                returned.add(int(value))
            assert time.monotonic() < deadline, "the agent did not reach the call to kill"
    finally:
        agent.kill()
        _, errors = agent.communicate(timeout=30)
    assert agent.returncode == -signal.SIGKILL, errors
    return started, returned, signer_pid


def _gone(pid: int, timeout: float = 60) -> bool:
    """Wait until process ``pid`` (not our child: reaped by init) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


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


def _check_complete(log: Path, identity_path: Path, started: set[int], returned: set[int]) -> list[dict]:
    verified = run_warden("audit", "verify", str(log), "--public-key", str(identity_path) + ".json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.strip() == f"OK: {EXPECTED} records in 1 sessions verified"
    records = read_jsonl(log)
    assert [r["seq"] for r in records] == list(range(EXPECTED))
    calls = _calls(records)
    assert sorted(calls) == sorted(started)
    for call in returned:
        assert calls[call] == ["intent", "decision", "result"], call
    assert calls[KILLED_IN] == ["intent", "decision"]  # no tool runs without its intent on record
    assert len({r["record_id"] for r in records}) == EXPECTED
    return records


def test_records_of_a_killed_agent_are_complete_ordered_and_verifiable_after_recovery(tmp_path):
    identity = AgentIdentity.create("support-bot", "alice@example.com", ["read:files", "write:files"])
    identity_path = tmp_path / "support-bot.pem"
    identity.save(identity_path)
    spool = tmp_path / "spool"

    # The agent and its signer process die together (the signer had fallen behind).
    started, returned, signer_pid = _kill_agent_mid_way(tmp_path, identity_path, spool, with_signer=True)
    assert started == set(range(KILLED_IN + 1)) and returned == set(range(KILLED_IN))
    assert _gone(signer_pid)

    [left] = list(spool.glob("*.spool"))
    log = left.with_suffix(".jsonl")
    signed_before = len(read_jsonl(log))
    assert 3 * STOPPED_AT <= signed_before < EXPECTED, "the kill should leave records spooled but unsigned"

    recovery = run_warden("audit", "recover", str(spool), "--identity", str(identity_path))
    assert recovery.returncode == 0, recovery.stdout + recovery.stderr
    assert f"{EXPECTED - signed_before} records signed" in recovery.stdout
    assert not list(spool.glob("*.spool"))
    records = _check_complete(log, identity_path, started, returned)

    # A second recovery finds nothing left to do, and signs nothing twice.
    again = run_warden("audit", "recover", str(spool), "--identity", str(identity_path))
    assert again.returncode == 0 and again.stdout == ""
    assert read_jsonl(log) == records


def test_the_signer_process_of_a_killed_agent_signs_the_rest_and_removes_the_spool(tmp_path):
    identity = AgentIdentity.create("support-bot", "alice@example.com", ["read:files", "write:files"])
    identity_path = tmp_path / "support-bot.pem"
    identity.save(identity_path)
    spool = tmp_path / "spool"

    started, returned, signer_pid = _kill_agent_mid_way(tmp_path, identity_path, spool, with_signer=False)
    assert _gone(signer_pid), "the signer process should finish and exit once its agent is gone"
    assert not list(spool.glob("*.spool"))  # nothing left to recover
    [log] = list(spool.glob("*.jsonl"))
    _check_complete(log, identity_path, started, returned)


# -- the background signer in one process --------------------------------------------------


def _die(signer: ActionSigner) -> None:
    """Stop a signer as the death of its agent and signer processes would: both gone, the
    descriptors (and flocks) with them."""
    background = signer._background
    assert background is not None
    atexit.unregister(background.close)
    with background._lock:
        background._closed = True  # no restart of the signer process
    os.kill(background.stats()["signer_pid"], signal.SIGKILL)
    background._thread.join()
    for fd in (background._bell, background._fd, background._log_reader):
        os.close(fd)


def _signer_process(signer: ActionSigner, sig: signal.Signals) -> int:
    pid: int = signer.stats()["signer_pid"]
    os.kill(pid, sig)
    return pid


def _fill(signer: ActionSigner, calls: int = 20) -> None:
    for i in range(calls):
        signer.append_many(
            "s-1",
            (("intent", {"tool": "file_read", "args": {"i": i}}), ("decision", {"effect": "allow", "reasons": []})),
        )
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
    (dead / spool.name).write_bytes(spool.read_bytes() + b'1700000000,result,5:"s-2"{"summ')
    signer.close()
    [result] = recover_spool(dead, identity)
    assert result.recovered == 6
    assert verify_records(
        read_jsonl(dead / spool.with_suffix(".jsonl").name), {identity.key_id: identity.public_key}
    ).ok


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
    signer = ActionSigner(identity, spool_dir=tmp_path, max_pending=4)
    _signer_process(signer, signal.SIGSTOP)  # a signer that cannot keep up
    done = threading.Event()

    def producer() -> None:
        for i in range(10):
            signer.append("s-1", "result", {"summary": str(i)})
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert not done.wait(0.5), "append should wait while 4 records are unsigned"
    assert signer.stats()["appended"] == 4
    _signer_process(signer, signal.SIGCONT)
    thread.join(30)
    assert done.is_set()
    assert [r["payload"]["summary"] for r in signer.session_log()] == [str(i) for i in range(10)]
    signer.close()


def test_spool_lines_are_appended_before_append_returns(identity, tmp_path):
    signer = ActionSigner(identity, spool_dir=tmp_path)
    _signer_process(signer, signal.SIGSTOP)
    signer.append("s-1", "intent", {"tool": "file_delete", "args": {"path": "/tmp/x"}})
    lines = signer._background.spool_path.read_bytes().splitlines()  # type: ignore[union-attr]
    assert json.loads(lines[0])["key_id"] == identity.key_id
    assert lines[1].endswith(b'"s-1"{"args":{"path":"/tmp/x"},"tool":"file_delete"}')
    assert signer.log_path.read_bytes() == b""  # type: ignore[union-attr]  # not signed yet
    _signer_process(signer, signal.SIGCONT)
    signer.close()
    assert len(read_jsonl(signer.log_path)) == 1  # type: ignore[arg-type]


# -- the signer process ------------------------------------------------------------------


def test_a_killed_signer_process_is_replaced_and_nothing_is_lost(identity, tmp_path):
    delivered: list[dict] = []
    signer = ActionSigner(identity, spool_dir=tmp_path, sink=delivered.append)
    _fill(signer, calls=5)
    signer.flush()
    first = _signer_process(signer, signal.SIGSTOP)
    _fill(signer, calls=5)  # spooled while the signer is stuck
    os.kill(first, signal.SIGKILL)
    _fill(signer, calls=5)  # spooled while it is dead or being replaced
    assert signer.flush(timeout=60), "a dead signer process must be replaced"
    log = signer.session_log()
    assert len(log) == 45 and delivered == log
    assert verify_records(log, {identity.key_id: identity.public_key}).ok
    assert [r["seq"] for r in log if r["session_id"] == "s-1"] == list(range(30))
    stats = signer.stats()
    assert stats["restarts"] == 1 and stats["signer_pid"] != first and stats["error"] is None
    assert signer.sign_record("s-2", "output", {"output": "done"})["seq"] == 15
    signer.close()
    assert read_jsonl(signer.log_path) == signer.session_log()  # type: ignore[arg-type]
    assert not list(tmp_path.glob("*.spool"))
    after = signer.stats()  # still answers once closed, with the final counts
    assert after["appended"] == after["signed"] == 46 and after["pending"] == 0


def test_a_dead_agents_spool_is_finished_by_its_signer_process_not_by_recovery(identity, tmp_path):
    signer = ActionSigner(identity, spool_dir=tmp_path, keep_log=False)
    background = signer._background
    assert background is not None
    _fill(signer, calls=1)
    signer.flush()  # the signer process runs and holds the log's lock
    pid = _signer_process(signer, signal.SIGSTOP)
    _fill(signer, calls=3)
    # The agent dies: its spool lock and the signer's pipe close; the signer process holds the log.
    atexit.unregister(background.close)
    with background._lock:
        background._closed = True
    for fd in (background._bell, background._fd, background._log_reader):
        os.close(fd)
    assert recover_spool(tmp_path, identity) == []  # the log's lock: never two signers on one log
    os.kill(pid, signal.SIGCONT)
    background._thread.join(30)  # the signer process exited
    assert not background.spool_path.exists()
    log = read_jsonl(background.log_path)
    assert len(log) == 12 and verify_records(log, {identity.key_id: identity.public_key}).ok


def test_a_signer_process_given_the_wrong_key_fails_every_later_append(identity, other_identity, tmp_path):
    signer = ActionSigner(identity, spool_dir=tmp_path)
    background = signer._background
    assert background is not None
    background._seed = other_identity.private_key.private_bytes_raw()
    os.kill(background.stats()["signer_pid"], signal.SIGKILL)  # its replacement gets the wrong key
    with pytest.raises(SigningError, match="not the spool's key"):
        signer.sign_record("s-1", "output", {"output": "x"})
    with pytest.raises(SigningError, match="not the spool's key"):
        signer.append("s-1", "output", {"output": "y"})
    assert background.stats()["restarts"] == 1  # an error is not retried
    with pytest.raises(SigningError, match="not the spool's key"):
        signer.close()


def test_libsodium_and_openssl_sign_the_same_bytes(identity, monkeypatch):
    seed = identity.private_key.private_bytes_raw()
    messages = [b"", b"x", bytes(range(256)) * 7]
    sodium, public = ed25519_signer(seed)
    assert public == identity.public_key.public_bytes_raw()
    assert [sodium(m) for m in messages] == [identity.sign(m) for m in messages]
    monkeypatch.setitem(sys.modules, "nacl.bindings", None)  # PyNaCl missing: cryptography signs
    openssl, _ = ed25519_signer(seed)
    assert openssl.__qualname__ != sodium.__qualname__
    assert [openssl(m) for m in messages] == [identity.sign(m) for m in messages]


def test_a_forked_child_cannot_append_to_its_parents_spool(identity, tmp_path):
    signer = ActionSigner(identity, spool_dir=tmp_path)
    signer.append("s-1", "result", {"summary": "before the fork"})
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        try:
            signer.append("s-1", "result", {"summary": "from the child"})
        except SigningError:
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    signer.append("s-1", "result", {"summary": "after the fork"})
    assert [r["payload"]["summary"] for r in signer.session_log()] == ["before the fork", "after the fork"]
    signer.close()


def _until(condition, what: str) -> None:
    """Wait for a state the test brings about; the deadline only turns a hang into a failure."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.002)


def _stopped(pid: int) -> bool:
    """True once the kernel has stopped ``pid`` (``kill`` returns before SIGSTOP takes effect)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] in ("T", "t")


def _stop_asleep(signer: ActionSigner) -> int:
    """Stop the signer process at a moment its ``asleep`` byte is set; return its pid.

    No timing: the process is stopped for certain before the byte is read, and a process that
    woke between the check and the stop is let go and stopped again."""
    background = signer._background
    assert background is not None and background._shared is not None
    pid: int = signer.stats()["signer_pid"]
    while True:
        _until(lambda: background._shared[_ASLEEP], "the signer process went to sleep")
        os.kill(pid, signal.SIGSTOP)
        _until(lambda: _stopped(pid), "the signer process stopped")
        if background._shared[_ASLEEP]:
            return pid
        os.kill(pid, signal.SIGCONT)


def test_the_agent_rings_only_a_sleeping_signer_and_hears_from_it_only_while_it_waits(identity, tmp_path):
    signer = ActionSigner(identity, spool_dir=tmp_path, keep_log=False)
    background = signer._background
    assert background is not None and background._shared is not None
    signer.append("s-1", "result", {"summary": "first"})
    _until(lambda: background._refresh() == 0, "the first record signed")  # read off the page: nobody listens

    # Rings: the process is stopped while asleep, so only the agent touches the page meanwhile.
    pid = _stop_asleep(signer)
    rings = signer.stats()["rings"]
    for i in range(100):
        signer.append("s-1", "result", {"summary": str(i)})
    assert signer.stats()["rings"] == rings + 1  # the first append woke it; the others found it awake
    assert background._shared[_ASLEEP] == 0
    os.kill(pid, signal.SIGCONT)
    # Signed while nobody listened; asleep again means its last batch's report decision is made.
    _until(lambda: background._refresh() == 0, "the 100 records signed")
    _until(lambda: background._shared[_ASLEEP], "the signer process asleep again")

    # Reports: a listening agent is told; then closing joins the thread that counts reports.
    pid = _stop_asleep(signer)
    with background._progress:
        background._listen(1)
    signer.append("s-1", "result", {"summary": "while listening"})
    os.kill(pid, signal.SIGCONT)
    _until(lambda: background._refresh() == 0, "the record signed while the agent listens")
    _until(lambda: background._shared[_ASLEEP], "the signer process asleep again")
    with background._progress:
        background._listen(-1)
    signer.close()
    # One report when the signer process started (its count), at least one while listening, none else.
    assert signer.stats()["reports"] >= 2
    assert len(read_jsonl(background.log_path)) == 102


def test_a_signer_that_nobody_listens_to_reports_only_its_start(identity, tmp_path):
    signer = ActionSigner(identity, spool_dir=tmp_path, keep_log=False)
    background = signer._background
    assert background is not None and background._shared is not None
    for i in range(50):
        signer.append("s-1", "result", {"summary": str(i)})
        if i % 10 == 0:
            pid = _stop_asleep(signer)  # some appends find it asleep, some awake, none wait for it
            os.kill(pid, signal.SIGCONT)
    _until(lambda: background._refresh() == 0, "every record signed")
    _until(lambda: background._shared[_ASLEEP], "the signer process asleep again")
    signer.close()  # nothing left to sign: its flush listens, but no batch is signed while it does
    assert signer.stats()["reports"] == 1  # the count it reports on starting, and nothing after
    assert len(read_jsonl(background.log_path)) == 50
