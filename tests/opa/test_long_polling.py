"""Long polling as OPA does it (`Prefer: modes=snapshot,delta;wait=N`): the request is held
until the environment's bundle changes, and answered within a second of the change."""

import asyncio

import pytest

from controlplane.bundles import services as bundle_services
from controlplane.identity import services as identity_services
from controlplane.opa import longpoll
from controlplane.opa.longpoll import EARLY_END_FRACTION
from tests.opa.opa_client import verify_bundle
from tests.opa.sidecar import DJANGO_ONLY, FAST_PATH, EmulatedOPA, asgi_client, in_thread, run


LONG_POLL = "application/vnd.openpolicyagent.bundles"


@pytest.fixture(params=[FAST_PATH, DJANGO_ONLY], ids=["fast-path", "django-view"])
def app(request):
    return request.param


async def _held_poll_then(change, *, token, resource, etag, wait=15, app=FAST_PATH):
    """Start a long poll, check it is held, make `change` in another thread, and return
    (response, seconds from the change's commit to the answer). The wait outlasts a slow
    change (a bundle rebuild on a loaded host) even when ended early (longpoll.hold_seconds)."""
    loop = asyncio.get_running_loop()
    async with asgi_client(app) as client:
        opa = EmulatedOPA(client, token=token, resource=resource)
        opa.etag = etag
        poll = asyncio.create_task(opa.download(wait=wait))
        await asyncio.sleep(0.5)
        assert not poll.done(), "the long poll was answered before anything changed"
        await in_thread(change)
        changed_at = loop.time()
        response = await asyncio.wait_for(poll, wait + 5)
        return response, loop.time() - changed_at


def test_long_poll_receives_a_promoted_bundle_within_one_second(dev, staging, staging_token, admin, signing_key, app):
    response, elapsed = run(
        _held_poll_then(
            lambda: bundle_services.promote_bundle(dev, to=staging, by=admin),
            token=staging_token, resource="bundles/staging", etag="", app=app,
        )
    )
    staging.refresh_from_db()
    assert response.status_code == 200
    assert elapsed < 1.0, f"answered {elapsed:.3f}s after the promotion"
    assert response.headers["Content-Type"] == LONG_POLL  # exactly: OPA keeps long polling
    assert "Content-Encoding" not in response.headers
    assert response.headers["ETag"] == staging.active_bundle.etag
    verified = verify_bundle(response.content, public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)
    assert verified.manifest["revision"] == staging.active_bundle.revision


def test_long_poll_receives_the_suspension_of_an_agent_within_one_second(dev, dev_token, agent, admin, signing_key):
    old_etag = dev.active_bundle.etag
    response, elapsed = run(
        _held_poll_then(
            lambda: identity_services.suspend_agent(agent, by=admin, reason="leaked key"),
            token=dev_token, resource="bundles/dev", etag=old_etag,
        )
    )
    dev.refresh_from_db()
    assert response.status_code == 200
    assert elapsed < 1.0, f"answered {elapsed:.3f}s after the suspension"
    assert response.headers["ETag"] == dev.active_bundle.etag != old_etag
    assert response.headers["Content-Type"] == LONG_POLL
    verified = verify_bundle(response.content, public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)
    assert verified.data["warden_registry"]["agents"]["billing-bot"]["status"] == "suspended"


def test_long_poll_without_change_is_answered_304_after_the_wait(dev, dev_token, app):
    current = dev.active_bundle.etag

    async def scenario():
        loop = asyncio.get_running_loop()
        async with asgi_client(app) as client:
            opa = EmulatedOPA(client, token=dev_token, resource="bundles/dev")
            opa.etag = current
            started = loop.time()
            response = await opa.download(wait=1)
            return response, loop.time() - started

    response, elapsed = run(scenario())
    assert response.status_code == 304
    # Ended early on purpose (longpoll.hold_seconds), but never so early that OPA, which asks
    # again at once, would busy-loop.
    assert 1 - EARLY_END_FRACTION <= elapsed < 2.5, f"held {elapsed:.3f}s for wait=1"
    assert response.headers["ETag"] == current


def test_waits_that_start_together_end_spread_over_the_last_fifth_of_the_wait(dev, dev_token, monkeypatch):
    """A fleet woken by one change re-polls together; exact waits would expire together, every
    wait seconds, as one burst of 304s. Each hold ends at its own moment in the last fifth of
    the wait, and every poll is still answered 304 with the ETag it holds, as OPA needs."""
    wait, polls = 5, 20
    chosen = []
    real_hold = longpoll.hold_seconds
    monkeypatch.setattr(longpoll, "hold_seconds", lambda w: chosen.append(real_hold(w)) or chosen[-1])
    current = dev.active_bundle.etag

    async def scenario():
        loop = asyncio.get_running_loop()
        async with asgi_client() as client:
            fleet = [EmulatedOPA(client, token=dev_token, resource="bundles/dev") for _ in range(polls)]
            for opa in fleet:
                opa.etag = current

            async def timed(opa):
                response = await opa.download(wait=wait)
                return response, loop.time() - started

            started = loop.time()
            return await asyncio.gather(*(timed(opa) for opa in fleet))

    answers = run(scenario())
    assert [r.status_code for r, _ in answers] == [304] * polls
    assert {r.headers["ETag"] for r, _ in answers} == {current}
    assert len(chosen) == polls and len(set(chosen)) == polls, "every poll draws its own end"
    assert all((1 - EARLY_END_FRACTION) * wait <= hold <= wait for hold in chosen)
    # The k-th answer cannot come before the k-th shortest hold has passed (no poll ends
    # before the end drawn for it), and the first comes before the full wait: ends are spread.
    elapsed = sorted(seconds for _, seconds in answers)
    assert all(seconds >= hold for seconds, hold in zip(elapsed, sorted(chosen), strict=True))
    assert elapsed[0] < wait, f"the first of {polls} polls was held the full {wait}s"


def test_hold_seconds_draws_ends_across_the_last_fifth_of_the_wait(monkeypatch):
    import random

    draws = random.Random(20)
    monkeypatch.setattr(longpoll.random, "random", draws.random)
    holds = [longpoll.hold_seconds(30) for _ in range(2000)]
    assert all(24 <= hold <= 30 for hold in holds)
    assert min(holds) < 24.1 and max(holds) > 29.9  # the whole window, not a corner of it
    assert longpoll.hold_seconds(1) >= 1 - EARLY_END_FRACTION  # short waits too: no busy loop


def test_first_long_poll_without_etag_gets_the_bundle_at_once(dev, dev_token):
    async def scenario():
        loop = asyncio.get_running_loop()
        async with asgi_client() as client:
            started = loop.time()
            response = await EmulatedOPA(client, token=dev_token, resource="bundles/dev").download(wait=30)
            return response, loop.time() - started

    response, elapsed = run(scenario())
    assert response.status_code == 200 and elapsed < 1.0
    assert response.headers["Content-Type"] == LONG_POLL


def test_long_poll_on_an_environment_without_bundle_ends_in_404_after_the_wait(staging, staging_token):
    async def scenario():
        loop = asyncio.get_running_loop()
        async with asgi_client() as client:
            started = loop.time()
            response = await EmulatedOPA(client, token=staging_token, resource="bundles/staging").download(wait=1)
            return response, loop.time() - started

    response, elapsed = run(scenario())
    assert response.status_code == 404 and elapsed >= 1 - EARLY_END_FRACTION


def test_many_concurrent_long_polls_are_all_woken_by_one_activation(dev, staging, staging_token, admin):
    async def scenario():
        async with asgi_client() as client:
            sidecars = [EmulatedOPA(client, token=staging_token, resource="bundles/staging") for _ in range(50)]
            polls = [asyncio.create_task(opa.download(wait=10)) for opa in sidecars]
            await asyncio.sleep(0.5)
            assert not any(p.done() for p in polls)
            await in_thread(bundle_services.promote_bundle, dev, to=staging, by=admin)
            return await asyncio.wait_for(asyncio.gather(*polls), 5)

    responses = run(scenario())
    assert {r.status_code for r in responses} == {200}
    assert len({r.headers["ETag"] for r in responses}) == 1


def test_with_redis_down_a_change_made_by_another_process_still_ends_the_long_poll(
    dev, staging, staging_token, admin, settings
):
    """Another web process's activation reaches this one only through Redis; with Redis down
    the held poll re-reads the database every notify.DB_POLL_SECONDS instead of waiting out
    its full wait and answering 304."""
    import socket

    from controlplane.bundles.models import Environment
    from tests.identity.factories import AgentFactory

    with socket.socket() as probe:  # a port nobody listens on: Redis is down
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{dead_port}/0"
    bundle_services.promote_bundle(dev, to=staging, by=admin)
    staging.refresh_from_db()
    old_etag = staging.active_bundle.etag

    def activate_elsewhere():
        # What another process does: build and point the environment at a new bundle; its
        # Redis publish is lost, and nothing in this process is woken directly.
        AgentFactory(name="staging-bot", environments=["staging"])
        bundle = bundle_services.build_bundle(
            staging, policy_files=bundle_services.policy_files_of(staging.active_bundle), reason="elsewhere"
        )
        Environment.objects.filter(pk=staging.pk).update(active_bundle=bundle)

    response, _ = run(
        _held_poll_then(activate_elsewhere, token=staging_token, resource="bundles/staging", etag=old_etag, wait=20)
    )
    staging.refresh_from_db()
    assert response.status_code == 200
    assert response.headers["ETag"] == staging.active_bundle.etag != old_etag
