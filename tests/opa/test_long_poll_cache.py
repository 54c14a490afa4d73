"""A held long poll costs no query while the process's Redis subscription is live: the cached
ETag is exact until an activation arrives, and the polls one activation wakes share one read."""

import asyncio
import contextlib

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


def test_one_activation_wakes_every_waiter_of_its_environment_from_any_thread_and_no_other():
    # _wake_local runs in a request's thread (publish) or in the loop (the Redis fan-in): both
    # must wake every listener of the environment, once per loop, and leave others waiting.
    from controlplane.bundles import notify

    async def scenario():
        async with contextlib.AsyncExitStack() as stack:
            dev = [await stack.enter_async_context(notify.BundleChangeListener("dev")) for _ in range(3)]
            staging = await stack.enter_async_context(notify.BundleChangeListener("staging"))

            waits = [asyncio.create_task(listener.wait(10)) for listener in dev]
            await asyncio.sleep(0)
            await asyncio.to_thread(notify._wake_local, "dev")  # from another thread
            assert await asyncio.gather(*waits) == [True, True, True]
            assert await staging.wait(0.2) is False

            for listener in dev:
                listener.rearm()
            notify._wake_local("dev")  # from the loop itself, before anyone waits: not lost
            assert [await listener.wait(10) for listener in dev] == [True, True, True]
            assert await staging.wait(0.1) is False

    run(scenario())


@pytest.mark.parametrize("cancelled_in", ["wait", "subscribe"])
def test_a_poll_cancelled_by_a_disconnect_leaves_no_waiter_behind(cancelled_in, monkeypatch):
    # The fast path cancels a held poll when its client goes away, while it waits or while
    # the process is still subscribing to Redis (seconds on a loaded host): either way its
    # listener must leave the registry, or every activation would wake it forever after.
    from controlplane.bundles import notify

    if cancelled_in == "subscribe":
        async def never_subscribed():
            await asyncio.Event().wait()

        monkeypatch.setattr(notify._fan_in, "ensure_running", never_subscribed)
    entered = []

    async def held():
        async with notify.BundleChangeListener("gone") as listener:
            entered.append(listener)
            await listener.wait(30)

    async def scenario():
        poll = asyncio.create_task(held())
        for _ in range(100):
            await asyncio.sleep(0.05)
            if cancelled_in == "subscribe" or (entered and entered[0]._future is not None):
                break
        assert "gone" in notify._waiters
        assert bool(entered) is (cancelled_in == "wait")
        poll.cancel()
        await asyncio.gather(poll, return_exceptions=True)
        assert poll.cancelled()
        assert "gone" not in notify._waiters
        notify._wake_local("gone")  # nothing left to wake, nothing raised

    run(scenario())
