"""Decision logs uploaded from a child process (agents_sdk.sidecar.logproc), as `warden
sidecar` does: every event delivered, a full queue dropped and counted (never a wait), a
dead child replaced with its loss counted, and a flush when the sidecar stops or dies."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import pytest

from agents_sdk.sidecar import Sidecar, parse_config, uploads
from agents_sdk.sidecar.config import DecisionLogConfig, Service
from agents_sdk.sidecar.logproc import CHILD_NICENESS, DecisionLogProcess
from agents_sdk.sidecar.uploads import DecisionLogShipper
from agents_sdk.tests.signed_bundles import REPO_ROOT
from agents_sdk.tests.test_sidecar import EXAMPLES, opa_config, request, server, signer  # noqa: F401 - fixtures

FAST = {"min_delay_seconds": 0.05, "max_delay_seconds": 0.1}


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return found


def metrics_of(sidecar: Sidecar) -> dict[str, float]:
    """The sidecar's ``GET /metrics`` text (``Sidecar.metrics_text``) as name -> value."""
    values: dict[str, float] = {}
    for line in sidecar.metrics_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split(" ")
            values[name] = float(value)
    return values


@pytest.fixture
def sidecar_with_process(server, signer, tmp_path):  # noqa: F811
    config = opa_config(server, signer, tmp_path, decision_logs={"service": "controlplane", "reporting": FAST})
    sidecar = Sidecar(parse_config(config), addr="127.0.0.1:0", decision_log_process=True).start()
    assert sidecar.bundles.wait_until_ready(10)
    yield sidecar
    sidecar.stop()


def test_every_decision_is_uploaded_by_a_child_process(server, sidecar_with_process):  # noqa: F811
    sidecar = sidecar_with_process
    assert isinstance(sidecar.decision_logs, DecisionLogProcess)
    child = sidecar.decision_logs._child
    assert child is not None and child.pid in children_of(os.getpid())
    ids = [request(sidecar, "POST", "/v1/data/warden/decision", {"input": EXAMPLES[i % 8]})[1]["decision_id"]
           for i in range(200)]
    assert sidecar.decision_logs.flush()
    events = server.state.decision_events()
    assert [event["decision_id"] for event in events] == ids  # all of them, in order
    assert events[4]["input"]["action"]["args"]["note"] == "**REDACTED**"  # masked as in-thread
    assert sidecar.decision_logs.uploaded == 200 and sidecar.decision_logs.dropped == 0
    assert sidecar.decision_logs.pending == 0
    metrics = sidecar.status()["decision_logs"]["metrics"]
    assert metrics == {"counter_decision_logs_dropped": 0, "counter_decision_logs_pending": 0}


def test_stopping_delivers_what_is_queued_and_ends_the_child(server, signer, tmp_path):  # noqa: F811
    config = opa_config(server, signer, tmp_path)  # uploads every 60 s: only stop() sends these
    sidecar = Sidecar(parse_config(config), addr="127.0.0.1:0", decision_log_process=True).start()
    assert sidecar.bundles.wait_until_ready(10)
    for _ in range(50):
        request(sidecar, "POST", "/v1/data/warden/decision", {"input": EXAMPLES[2]})
    child = sidecar.decision_logs._child
    sidecar.stop()
    assert child.poll() == 0  # it flushed and exited when the pipe closed
    assert len(server.state.decision_events()) == 50
    assert sidecar.decision_logs.uploaded == 50 and sidecar.decision_logs.dropped == 0


def test_a_failed_upload_is_retried_by_the_child(server, sidecar_with_process):  # noqa: F811
    server.state.fail_logs = 2
    for _ in range(5):
        request(sidecar_with_process, "POST", "/v1/data/warden/decision", {"input": EXAMPLES[2]})
    assert wait_for(lambda: len(server.state.decision_events()) == 5)
    assert server.state.fail_logs == 0 and sidecar_with_process.decision_logs.dropped == 0


def test_the_childs_queue_is_bounded_and_its_drops_are_counted(server, signer, tmp_path):  # noqa: F811
    config = opa_config(server, signer, tmp_path,
                        decision_logs={"service": "controlplane", "reporting": {"buffer_size_limit_events": 3}})
    sidecar = Sidecar(parse_config(config), addr="127.0.0.1:0", decision_log_process=True).start()
    try:
        assert sidecar.bundles.wait_until_ready(10)
        server.state.fail_logs = 10**6  # the control plane refuses every upload
        for _ in range(5):
            request(sidecar, "POST", "/v1/data/warden/decision", {"input": EXAMPLES[2]})
        assert not sidecar.decision_logs.flush()
        assert sidecar.decision_logs.pending == 3 and sidecar.decision_logs.dropped == 2
        # The same counts at GET /metrics (served from the child's latest report, without waiting for it).
        assert wait_for(lambda: metrics_of(sidecar).get("warden_decision_logs_dropped_total") == 2)
        assert metrics_of(sidecar)["warden_decision_logs_pending"] == 3
        status = sidecar.status()["decision_logs"]
        assert status["metrics"]["counter_decision_logs_dropped"] == 2
        assert status["http_code"] == 503 and "log upload failed" in status["message"]
    finally:
        server.state.fail_logs = 0
        sidecar.stop()
    assert len(server.state.decision_events()) == 3  # the three kept are delivered on stop


def test_a_full_queue_in_the_serving_process_drops_the_oldest_without_waiting():
    # Not started: nothing drains the queue, as when the pipe is full.
    logs = DecisionLogProcess(Service("cp", "http://127.0.0.1:9"), DecisionLogConfig("cp", buffer_size_limit_events=3))
    started = time.perf_counter()
    for index in range(1000):
        logs.log_encoded(b'{"decision_id":"%d"}' % index)
    assert time.perf_counter() - started < 5  # bounded, not a timing claim: it never blocked
    assert logs.dropped == 997 and logs.pending == 3
    assert [frame[4:] for frame in logs._frames] == [b'{"decision_id":"%d"}' % i for i in (997, 998, 999)]


@pytest.mark.parametrize("batches", [[2, 1], [5], [1, 7, 0, 2], [3, 3]])
def test_the_child_queues_a_read_of_events_as_it_would_one_by_one(batches):
    # The child queues each read of the pipe at once (log_many): the same events kept, the
    # same oldest dropped and counted, as with one log_encoded per event, over the bound too.
    config = DecisionLogConfig("cp", buffer_size_limit_events=3)
    one_by_one = DecisionLogShipper(Service("cp", "http://127.0.0.1:9"), config)
    at_once = DecisionLogShipper(Service("cp", "http://127.0.0.1:9"), config)
    count = 0
    for size in batches:
        events = [b'{"decision_id":"%d"}' % (count + i) for i in range(size)]
        count += size
        for event in events:
            one_by_one.log_encoded(event)
        at_once.log_many(events)
        assert list(at_once._queue) == list(one_by_one._queue)
        assert at_once.dropped == one_by_one.dropped == max(0, count - 3)


def test_uploads_stay_within_the_limit_as_the_compression_ratio_changes():
    # Groups are cut at the last upload's compression ratio: after very compressible events,
    # events that hardly compress must still be split to the limit, none lost or repeated.
    shipper = DecisionLogShipper(Service("cp", "http://127.0.0.1:9"), DecisionLogConfig("cp", upload_size_limit_bytes=4096))
    batches = [[b'{"decision_id":"%d","note":"%s"}' % (i, b"a" * 600) for i in range(400)],
               [b'{"decision_id":"%d","note":"%s"}' % (i, os.urandom(300).hex().encode()) for i in range(400)],
               [b'{"decision_id":"%d","note":"%s"}' % (i, b"b" * 600) for i in range(400)]]
    for events in batches:
        chunks = shipper._chunks(deque(events))
        assert all(len(body) <= 4096 for body, _ in chunks)
        assert [event for _, sent in chunks for event in sent] == events
        assert [json.loads(gzip.decompress(body)) for body, _ in chunks] == [[json.loads(e) for e in sent] for _, sent in chunks]
    assert shipper.dropped == 0


def test_a_killed_child_is_replaced_and_its_loss_is_counted(server, sidecar_with_process):  # noqa: F811
    sidecar = sidecar_with_process
    logs = sidecar.decision_logs
    for _ in range(20):
        request(sidecar, "POST", "/v1/data/warden/decision", {"input": EXAMPLES[2]})
    assert logs.flush()
    first = logs._child
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    assert wait_for(lambda: logs._child is not first)  # the sweep started another
    ids = [request(sidecar, "POST", "/v1/data/warden/decision", {"input": EXAMPLES[2]})[1]["decision_id"]
           for _ in range(30)]
    assert logs.flush()
    delivered = [event["decision_id"] for event in server.state.decision_events()]
    assert delivered[-30:] == ids and len(delivered) == 50
    assert logs.uploaded == 50 and logs.dropped == 0


def test_the_child_flushes_when_the_sidecar_is_killed(server, signer, tmp_path):  # noqa: F811
    """The `warden sidecar` command: its log process is in a process group of its own (a
    signal to the sidecar's group does not reach it), and a SIGKILL of the sidecar closes the pipe,
    so the child uploads what it holds and exits."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(opa_config(server, signer, tmp_path)))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "agents_sdk", "sidecar", "--config", str(path), "--addr", f"127.0.0.1:{port}"],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        def healthy() -> bool:
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                probe.request("GET", "/health")
                return probe.getresponse().status == 200
            except OSError:
                return False

        assert wait_for(healthy, 30)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for _ in range(40):
            connection.request("POST", "/v1/data/warden/decision", body=json.dumps({"input": EXAMPLES[2]}))
            assert connection.getresponse().read()
        connection.close()
        (child,) = children_of(process.pid)
        assert os.getpgid(child) == child != os.getpgid(process.pid)
        time.sleep(0.5)  # a few ticks: the events are in the pipe or the child
        assert not server.state.decision_events()  # uploads every 60 s: only the exit sends them
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        assert wait_for(lambda: len(server.state.decision_events()) == 40, 15)
        assert wait_for(lambda: not Path(f"/proc/{child}").exists(), 15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_the_child_yields_the_core_to_the_decisions(sidecar_with_process):
    """Uploads wait where they compete with decisions for a core: the child runs at a
    higher nice value than the serving process, in the serving process's session and so
    in its scheduling group, where that nice value counts (a session of its own is an
    autogroup of its own, given an equal share of the CPU whatever its nice value)."""
    child = sidecar_with_process.decision_logs._child
    expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + CHILD_NICENESS)
    assert wait_for(lambda: os.getpriority(os.PRIO_PROCESS, child.pid) == expected)
    assert os.getsid(child.pid) == os.getsid(0)
    assert scheduling_group(child.pid) == scheduling_group(os.getpid())


def scheduling_group(pid: int) -> str:
    """The group whose members share the process's CPU share: its autogroup ("/autogroup-85"),
    or, where /proc/<pid>/autogroup is empty, its cpu cgroup. The file is empty for a task in
    the kernel's default autogroup, the session of init never left (seen in CI: no session
    was begun above the suite), whose tasks are scheduled in the root group like any task
    outside autogroups; the cgroup then says which group that is."""
    try:
        autogroup = Path(f"/proc/{pid}/autogroup").read_text().split()
    except OSError:  # a kernel built without autogroups
        autogroup = []
    if autogroup:
        return autogroup[0]
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(",") or (hierarchy == "0" and not controllers):
            return f"cgroup {controllers or 'v2'}:{path}"
    raise AssertionError(f"no scheduling group found for {pid}")


def test_two_flushes_at_once_post_in_the_order_logged(monkeypatch):
    # The upload thread and a caller's flush (stop, the log process's flush frame) may run
    # together: the second must wait for the first's post, or later events reach the
    # control plane first (seen under load: the last 38 of 200 decisions arrived first).
    posted: list[list[str]] = []
    first_post_entered, release_first, second_post = threading.Event(), threading.Event(), threading.Event()

    def post(pool, service, resource, body, headers):
        posted.append([event["decision_id"] for event in json.loads(gzip.decompress(body))])
        if len(posted) == 1:
            first_post_entered.set()
            assert release_first.wait(10)
        else:
            second_post.set()

    monkeypatch.setattr(uploads, "_post", post)
    shipper = DecisionLogShipper(Service("cp", "http://127.0.0.1:9"), DecisionLogConfig("cp"))
    shipper.log_many([b'{"decision_id":"%d"}' % i for i in range(3)])
    first = threading.Thread(target=shipper.flush, daemon=True)
    first.start()
    assert first_post_entered.wait(10)
    shipper.log_many([b'{"decision_id":"%d"}' % i for i in range(3, 5)])
    second = threading.Thread(target=shipper.flush, daemon=True)
    second.start()
    assert not second_post.wait(1), "a second flush posted while the first was still posting"
    release_first.set()
    first.join(10)
    second.join(10)
    assert posted == [["0", "1", "2"], ["3", "4"]]
    assert shipper.uploaded == 5 and shipper.pending == 0
