"""A held long poll costs no query while the process's Redis subscription is live: the cached
ETag is exact until an activation arrives, and the polls one activation wakes share one read."""

import asyncio

import pytest
from django.conf import settings

from controlplane.identity import services as identity_services
from controlplane.opa import selectors
from tests.opa.sidecar import EmulatedOPA, asgi_client, in_thread, run

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="activations are pushed through Redis")

POLLS = 20


@pytest.fixture
def database_reads(monkeypatch):
    calls = []
    read = selectors.active_bundle

    def counted(*args, **kwargs):
        calls.append(args)
        return read(*args, **kwargs)

    monkeypatch.setattr(selectors, "active_bundle", counted)
    return calls


def test_held_long_polls_read_the_database_once_not_once_per_poll(dev, dev_token, agent, admin, database_reads):
    async def scenario():
        async with asgi_client() as client:
            first = EmulatedOPA(client, token=dev_token, resource="bundles/dev")
            assert (await first.download(wait=1)).status_code == 200
            await first.download(wait=1)  # 304: this process now holds the subscription and the ETag
            before_idle = len(database_reads)
            fleet = [EmulatedOPA(client, token=dev_token, resource="bundles/dev") for _ in range(POLLS)]
            for opa in fleet:
                opa.etag = first.etag
            answers = await asyncio.gather(*(opa.download(wait=2) for opa in fleet))
            assert {a.status_code for a in answers} == {304}
            idle_reads = len(database_reads) - before_idle

            held = [asyncio.create_task(opa.download(wait=15)) for opa in fleet]
            await asyncio.sleep(0.5)
            before_wake = len(database_reads)
            await in_thread(identity_services.suspend_agent, agent, by=admin, reason="leaked key")
            woken = await asyncio.gather(*held)
            assert {a.status_code for a in woken} == {200}
            return idle_reads, len(database_reads) - before_wake

    idle_reads, wake_reads = run(scenario())
    assert idle_reads == 0, f"{POLLS} held polls with nothing changed made {idle_reads} reads"
    # One activation reaches this process twice (directly and through Redis): at most a read each.
    assert wake_reads <= 3, f"one activation woke {POLLS} polls and cost {wake_reads} reads"


def test_polls_whose_waits_end_together_are_all_answered_304_with_the_held_etag(dev, dev_token):
    # The herd of a fleet started together: every wait ends in the same instant, with the
    # subscription live (the fast path of notify's fan-in), and each poll is answered 304
    # carrying the ETag it holds, not held on nor answered with a bundle.
    async def scenario():
        async with asgi_client() as client:
            first = EmulatedOPA(client, token=dev_token, resource="bundles/dev")
            assert (await first.download(wait=1)).status_code == 200
            fleet = [EmulatedOPA(client, token=dev_token, resource="bundles/dev") for _ in range(POLLS)]
            for opa in fleet:
                opa.etag = first.etag
            for _ in range(2):  # twice: the second herd re-polls at once, as OPA does
                answers = await asyncio.gather(*(opa.download(wait=1) for opa in fleet))
                assert [a.status_code for a in answers] == [304] * POLLS
                assert {a.headers["ETag"] for a in answers} == {first.etag}
                assert {opa.etag for opa in fleet} == {first.etag}

    run(scenario())


@pytest.mark.parametrize(
    ("if_none_match", "etag", "matches"),
    [
        ('"abc"', '"abc"', True),  # OPA sends back the exact ETag
        ('"ab"', '"abc"', False),
        ('"abc"', '"ab"', False),
        ('"abcd"', '"abc"', False),
        ('W/"abc"', '"abc"', True),
        ('"x", "abc"', '"abc"', True),
        ("*", '"abc"', True),
        ("", '"abc"', False),
        (None, '"abc"', False),
    ],
)
def test_if_none_match_compares_etags_exactly(if_none_match, etag, matches):
    from controlplane.opa.longpoll import etag_matches

    assert etag_matches(if_none_match, etag) is matches


def test_a_lost_subscription_is_restarted_by_the_next_long_poll():
    # Once subscribed, a poll skips the wait for the subscription (notify's fast path); once
    # the subscription ends, the next poll must start it again, not take the fast path.
    from controlplane.bundles import notify

    async def scenario():
        async with notify.BundleChangeListener("dev"):
            assert notify.changes_are_pushed()
        lost = notify._fan_in._task
        lost.cancel()
        await asyncio.gather(lost, return_exceptions=True)
        assert not notify.changes_are_pushed()
        async with notify.BundleChangeListener("dev"):
            assert notify.changes_are_pushed()
            assert notify._fan_in._task is not lost

    run(scenario())
