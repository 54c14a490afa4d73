"""The fast paths of the verifying worker give exactly what the plain ones gave: one
canonical encoding for the signed bytes and the hash, copy-on-write masking, and batches
of one agent verified by several processes at once, stored in arrival order."""

from __future__ import annotations

import copy
import threading
import time

import pytest
from django.db import connection, connections
from rest_framework.test import APIClient

from agents_sdk.errors import CanonicalJSONError
from agents_sdk.records import ActionSigner, canonical_json, signing_bytes
from controlplane.audit import records, verification
from controlplane.audit.models import AuditEvent, Batch, BatchStatus, QuarantinedRecord, SessionHead
from tests.audit.conftest import route_verifications, upload

# -- one canonical encoding -------------------------------------------------------------


def signed(signer: ActionSigner) -> list[dict]:
    with signer.session(session_id="sess/ünïcode \"quoted\" \\ tab\t") as session:
        return [
            session.intent("refund", {"note": "zürich ✓ \u2028 \x01 \x1f", "nested": [{"a": 1.5, "b": None}], "e": ""}),
            session.decision("deny", reasons=[{"rule": "r", "message": "m\nn", "controls": []}]),
            session.result("12,50 €", big=2**70, neg=-0.0, tiny=1e-300),
            session.output({"deep": {"deeper": [[], {}, [True, False]]}}),
        ]


def test_signed_bytes_and_hash_come_from_one_encoding_exactly_as_the_sdk_makes_them(signer):
    for record in signed(signer):
        assert records.signed_encodings(record) == (signing_bytes(record), canonical_json(record))
        assert records.canonical_bytes(record) == canonical_json(record)


def test_a_record_whose_end_is_not_the_expected_text_is_encoded_the_slow_way(signer):
    record = signed(signer)[0]
    record["time"] = "2025-01-31T12:00:00.000000Z\u00e9"  # not a form_problem-checked record: escapes differ
    assert records.signed_encodings(record) == (signing_bytes(record), canonical_json(record))


@pytest.mark.parametrize("value", [{"a": float("inf")}, {"a": ["\ud800"]}, {"\udfff": 1}])
def test_values_without_canonical_form_are_refused_with_the_sdk_message(value):
    with pytest.raises(CanonicalJSONError) as expected:
        canonical_json(value)
    with pytest.raises(CanonicalJSONError) as got:
        records.canonical_bytes(value)
    assert str(got.value) == str(expected.value)


# -- masking, copy on write -------------------------------------------------------------


def reference_mask(payload, pointers, sensitive):
    """The masking as it was written first (deepcopy, then masking in place)."""
    masked = []
    result = copy.deepcopy(payload)

    def mask_pointer(document, pointer):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        node = document
        for part in parts[:-1]:
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                node = None
            if node is None:
                return False
        last = parts[-1]
        if isinstance(node, dict) and last in node:
            node[last] = records.MASK
            return True
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = records.MASK
            return True
        return False

    def mask_keys(value, where):
        if isinstance(value, dict):
            for key in value:
                path = f"{where}/{key.replace('~', '~0').replace('/', '~1')}"
                if key.lower() in sensitive:
                    value[key] = records.MASK
                    masked.append(path)
                else:
                    mask_keys(value[key], path)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                mask_keys(item, f"{where}/{index}")

    for pointer in pointers:
        candidates = [pointer] + ([pointer[len("/action"):]] if pointer.startswith("/action/") else [])
        for candidate in candidates:
            if mask_pointer(result, candidate):
                masked.append(candidate)
    mask_keys(result, "")
    return result, sorted(set(masked))


SENSITIVE = frozenset({"password", "token", "card_number"})
PAYLOADS = [
    {"tool": "refund", "args": {"ticket": 1, "amount": 5}},
    {"tool": "refund", "args": {"card_number": "4242", "Password": "x", "nested": [{"token": "t"}, {"ok": 1}]}},
    {"args": {"a/b": {"c~d": [1, 2, {"token": "[masked]"}]}, "list": [[{"password": None}]]}, "tool": "t"},
    {"summary": "s", "detail": {"x": {"y": {"z": "secret"}}}},
    {"output": [1, {"card_number": {"deep": "value"}}]},
    {"args": {"x": None, "y": [None, "v"]}, "tool": "t"},
]
POINTERS = [
    [], ["/action/args/ticket"], ["/args/a~1b/c~0d/1"], ["/detail/x/y/z", "/detail/x"], ["/output/0", "/output/1/card_number"],
    ["/args/x/inner", "/args/y/1", "/args/y/7", "/args/y/²", "/nope", "/"], ["/action/args"],
]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("pointers", POINTERS)
def test_copy_on_write_masking_matches_the_deepcopy_masking_and_never_changes_its_input(payload, pointers):
    before = copy.deepcopy(payload)
    if "/args/y/²" in pointers:  # the old code raised on a non-ASCII digit; the same result without it
        expected = reference_mask(payload, [p for p in pointers if p != "/args/y/²"], SENSITIVE)
    else:
        expected = reference_mask(payload, pointers, SENSITIVE)
    assert records.mask_payload(payload, pointers, SENSITIVE) == expected
    assert payload == before


def test_nothing_to_mask_returns_the_payload_itself():
    payload = {"tool": "refund", "args": {"ticket": 1}}
    assert records.mask_payload(payload, [], SENSITIVE) == (payload, [])
    assert records.mask_payload(payload, [], SENSITIVE)[0] is payload


# -- several processes, one agent -------------------------------------------------------

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="claims are PostgreSQL advisory locks; SQLite has one writer"
)


def upload_batches(identity, signer, monkeypatch, *, batches: int, sessions: int, per_session: int) -> list[int]:
    """Sign `sessions` sessions, spread each over every batch, upload without verifying."""
    route_verifications(monkeypatch, lambda batch_id: None)
    records = [[] for _ in range(batches)]
    for s in range(sessions):
        with signer.session(session_id=f"s{s}") as session:
            for n in range(per_session):
                records[n * batches // per_session].append(session.result(f"step {n}", n=n, password="p"))
    client = APIClient()
    return [upload(client, identity, chunk).json()["batch_id"] for chunk in records]


def run_in_threads(*calls) -> list:
    results, errors = [None] * len(calls), []

    def run(index, call):
        try:
            results[index] = call()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def assert_stored_in_order(batch_ids: list[int], total: int, sessions: int) -> None:
    assert set(Batch.objects.filter(pk__in=batch_ids).values_list("status", flat=True)) == {BatchStatus.VERIFIED}
    assert QuarantinedRecord.objects.count() == 0
    assert AuditEvent.objects.count() == total
    for session_id in (f"s{s}" for s in range(sessions)):
        rows = list(AuditEvent.objects.filter(session_id=session_id).order_by("id").values_list("seq", "batch_id"))
        assert [seq for seq, _ in rows] == list(range(total // sessions))  # stored in chain order
        assert [b for _, b in rows] == sorted(b for _, b in rows)  # batches stored in arrival order
        head = SessionHead.objects.get(session_id=session_id)
        assert head.last_seq == total // sessions - 1
    assert all(e["payload"]["password"] == "[masked]" for e in AuditEvent.objects.values("payload"))


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_batches_of_one_agent_verified_at_once_by_several_processes_are_stored_in_order(identity, signer,
                                                                                     monkeypatch):
    batch_ids = upload_batches(identity, signer, monkeypatch, batches=6, sessions=5, per_session=12)
    # Tasks delivered in any order to three "processes" (threads, each its own connection).
    order = [batch_ids[5], batch_ids[2], batch_ids[4], batch_ids[0], batch_ids[3], batch_ids[1]]
    outcomes = run_in_threads(*[lambda b=b: verification.verify_batch(b) for b in order])
    assert all(o is not None for o in outcomes)
    assert_stored_in_order(batch_ids, 60, 5)
    # A second delivery of every task changes nothing.
    run_in_threads(*[lambda b=b: verification.verify_batch(b) for b in batch_ids])
    assert AuditEvent.objects.count() == 60


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_batch_claimed_by_another_process_is_waited_for_and_done_here_if_it_is_left_pending(identity, signer,
                                                                                          monkeypatch):
    first, second = upload_batches(identity, signer, monkeypatch, batches=2, sessions=3, per_session=4)
    holder_has_it, release = threading.Event(), threading.Event()

    def holder():  # a process that claimed the first batch and then died without doing it
        with verification._claimed(first):
            holder_has_it.set()
            release.wait(30)

    def waiter():
        holder_has_it.wait(30)
        return verification.verify_batch(second)

    thread = threading.Thread(target=lambda: run_in_threads(holder))
    thread.start()
    try:
        done = []
        waiting = threading.Thread(target=lambda: done.append(run_in_threads(waiter)))
        waiting.start()
        time.sleep(1.0)
        # The second batch is checked but not stored while the first is claimed.
        assert Batch.objects.get(pk=second).status == BatchStatus.PENDING
        assert Batch.objects.get(pk=second).attempts == 1
        assert AuditEvent.objects.count() == 0
    finally:
        release.set()
        thread.join(30)
    waiting.join(60)
    assert done and done[0][0].events == 6
    assert_stored_in_order([first, second], 12, 3)
