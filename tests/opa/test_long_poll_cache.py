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
