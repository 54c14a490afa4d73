"""The sidecar's ``GET /metrics`` (decision-log counters in Prometheus's text format, drops
included) and the event loop it serves on (uvloop where installed, asyncio's otherwise)."""

from __future__ import annotations

import asyncio
import http.client
import sys
import threading

import pytest

from agents_sdk.sidecar import Sidecar, parse_config, serving
from agents_sdk.sidecar.config import DecisionLogConfig, Service
from agents_sdk.sidecar.logproc import DecisionLogProcess
from agents_sdk.tests.test_sidecar import EXAMPLES, opa_config, request, server, signer  # noqa: F401 - fixtures


def get_metrics(sidecar: Sidecar, method: str = "GET") -> tuple[int, str, dict[str, float]]:
    connection = http.client.HTTPConnection(*sidecar.address, timeout=5)
    try:
        connection.request(method, "/metrics")
        response = connection.getresponse()
        text = response.read().decode("utf-8")
        content_type = response.getheader("Content-Type") or ""
    finally:
        connection.close()
    values: dict[str, float] = {}
    for line in text.splitlines() if response.status == 200 else []:
        if line and not line.startswith("#"):
            name, value = line.split(" ")
            values[name] = float(value)
    return response.status, content_type, values


def bounded_logs(server, signer, tmp_path, limit: int) -> dict:  # noqa: F811
    return opa_config(server, signer, tmp_path,
                      decision_logs={"service": "controlplane", "reporting": {"buffer_size_limit_events": limit}})


def test_metrics_show_the_decision_logs_dropped_by_a_full_queue(server, signer, tmp_path):  # noqa: F811
    sidecar = Sidecar(parse_config(bounded_logs(server, signer, tmp_path, 3)), addr="127.0.0.1:0").start()
    try:
        assert sidecar.bundles.wait_until_ready(10)
        status, content_type, values = get_metrics(sidecar)
        assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
        assert values == {"warden_decision_logs_dropped_total": 0, "warden_decision_logs_uploaded_total": 0,
                          "warden_decision_logs_pending": 0, "warden_sidecar_repeated_answers_total": 0}
        for _ in range(5):  # uploads every 60 s: the queue of 3 drops the 2 oldest
            request(sidecar, "POST", "/v1/data/warden/decision", {"input": EXAMPLES[2]})
        assert get_metrics(sidecar)[2] == {"warden_decision_logs_dropped_total": 2,
                                           "warden_decision_logs_uploaded_total": 0,
                                           "warden_decision_logs_pending": 3,
                                           "warden_sidecar_repeated_answers_total": 4}
        assert sidecar.decision_logs.flush()
        assert get_metrics(sidecar)[2]["warden_decision_logs_uploaded_total"] == 3
    finally:
        sidecar.stop()


# What the decision-log process dropped, at /metrics: test_sidecar_logproc.py::
# test_the_childs_queue_is_bounded_and_its_drops_are_counted.


def test_metrics_are_read_without_waiting_for_a_flush_in_progress():
    # A flush holds the status lock while it waits for the child; the event loop, which
    # serves /metrics, must not wait for it.
    logs = DecisionLogProcess(Service("cp", "http://127.0.0.1:9"), DecisionLogConfig("cp", buffer_size_limit_events=2))
    for index in range(3):
        logs.log_encoded(b'{"decision_id":"%d"}' % index)
    got: list[dict[str, int]] = []
    with logs._status_lock:
        reader = threading.Thread(target=lambda: got.append(logs.counters()), daemon=True)
        reader.start()
        reader.join(10)
        assert not reader.is_alive()  # it returned while the lock was held
    assert got == [{"uploaded": 0, "dropped": 1, "pending": 2}]


def test_metrics_without_decision_logs_and_other_methods(server, signer, tmp_path):  # noqa: F811
    config = opa_config(server, signer, tmp_path)
    del config["decision_logs"]
    sidecar = Sidecar(parse_config(config), addr="127.0.0.1:0").start()
    try:
        assert sidecar.bundles.wait_until_ready(10)
        assert get_metrics(sidecar)[:1] == (200,)
        assert get_metrics(sidecar)[2] == {"warden_sidecar_repeated_answers_total": 0}
        assert get_metrics(sidecar, "POST")[0] == 405
    finally:
        sidecar.stop()


def test_json_answers_keep_their_content_type_and_text_answers_say_theirs():
    assert b"content-type: application/json\r\n" in serving.response(200, b"{}")
    answer = serving.response(200, serving.PrometheusText(b"a 1\n"))
    assert b"content-type: text/plain; version=0.0.4; charset=utf-8\r\n" in answer
    assert answer.endswith(b"\r\n\r\na 1\n")


# -- the event loop ------------------------------------------------------------------------


def test_the_sidecar_serves_on_uvloop_where_it_is_installed(monkeypatch):
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.delenv("WARDEN_SIDECAR_LOOP", raising=False)
    loop = serving.new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


@pytest.mark.parametrize("why", ["turned off", "not installed"])
def test_the_sidecar_serves_on_asyncios_loop_otherwise(server, signer, tmp_path, monkeypatch, why):  # noqa: F811
    if why == "turned off":
        monkeypatch.setenv("WARDEN_SIDECAR_LOOP", "asyncio")
    else:
        monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    loop = serving.new_event_loop()
    try:
        assert isinstance(loop, asyncio.SelectorEventLoop)
    finally:
        loop.close()
    sidecar = Sidecar(parse_config(opa_config(server, signer, tmp_path)), addr="127.0.0.1:0").start()
    try:
        assert sidecar.bundles.wait_until_ready(10)
        assert "uvloop" not in type(sidecar._loop).__module__
        status, answer = request(sidecar, "POST", "/v1/data/warden/decision", {"input": EXAMPLES[1]})
        assert status == 200 and answer["result"]["allow"] is False
    finally:
        sidecar.stop()
