"""Long polling as OPA does it (`Prefer: modes=snapshot,delta;wait=N`): the request is held
until the environment's bundle changes, and answered when the change wakes it.

No test here asserts how fast: a loaded machine would make that flaky, and the benches
measure it (bench/bundle_service.py, bench/sidecar_fleet.py). What is proved instead is
why a poll was answered: woken by the change (the listener's wake-up, a 200 before its hold
ended), or by its hold's end (never before the end drawn for it)."""

import asyncio

import pytest

from controlplane.bundles import notify
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


@pytest.fixture
def held(monkeypatch):
    """What the held polls went through: the holds drawn, the timeouts they waited with, and
    (environment, listener) of each wake-up by an activation (one activation may wake a
    listener twice: in-process and again through Redis)."""
    record = {"holds": [], "waits": [], "woken": []}
    real_hold, real_wait, real_wake = longpoll.hold_seconds, notify.BundleChangeListener.wait, \
        notify.BundleChangeListener.wake

    def hold_seconds(wait):
        record["holds"].append(real_hold(wait))
        return record["holds"][-1]

    async def wait(listener, timeout):
        record["waits"].append(timeout)
        return await real_wait(listener, timeout)

    def wake(listener):
        record["woken"].append((listener.environment_name, id(listener)))
        return real_wake(listener)

    monkeypatch.setattr(longpoll, "hold_seconds", hold_seconds)
    monkeypatch.setattr(notify.BundleChangeListener, "wait", wait)
    monkeypatch.setattr(notify.BundleChangeListener, "wake", wake)
    return record


# Long enough that a poll answered 200 was answered by the change, not by its hold's end,
# however slow a bundle rebuild is on a loaded machine.
HELD_WAIT = 60


async def _held_poll_then(change, *, token, resource, etag, wait=HELD_WAIT, app=FAST_PATH):
    """Start a long poll, check it is held, make `change` in another thread, and return the
    answer. A poll whose hold ended with no change is answered 304 with the ETag it held."""
    async with asgi_client(app) as client:
        opa = EmulatedOPA(client, token=token, resource=resource)
        opa.etag = etag
        poll = asyncio.create_task(opa.download(wait=wait))
        await asyncio.sleep(0.5)
        assert not poll.done(), "the long poll was answered before anything changed"
        await in_thread(change)
        return await poll


def test_a_held_long_poll_is_woken_by_a_promotion_and_receives_the_bundle(
    dev, staging, staging_token, admin, signing_key, app, held
):
    response = run(
        _held_poll_then(
            lambda: bundle_services.promote_bundle(dev, to=staging, by=admin),
            token=staging_token, resource="bundles/staging", etag="", app=app,
        )
    )
    staging.refresh_from_db()
    assert response.status_code == 200
    assert {name for name, _ in held["woken"]} == {"staging"}  # by the activation, not a database re-read
    assert max(held["waits"]) > 10  # nor by the end of its hold
    assert response.headers["Content-Type"] == LONG_POLL  # exactly: OPA keeps long polling
    assert "Content-Encoding" not in response.headers
    assert response.headers["ETag"] == staging.active_bundle.etag
    verified = verify_bundle(response.content, public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)
    assert verified.manifest["revision"] == staging.active_bundle.revision


def test_a_held_long_poll_is_woken_by_the_suspension_of_an_agent_and_receives_it(
    dev, dev_token, agent, admin, signing_key, held
):
    old_etag = dev.active_bundle.etag
    response = run(
        _held_poll_then(
            lambda: identity_services.suspend_agent(agent, by=admin, reason="leaked key"),
            token=dev_token, resource="bundles/dev", etag=old_etag,
        )
    )
    dev.refresh_from_db()
    assert response.status_code == 200
    assert "dev" in {name for name, _ in held["woken"]}
    assert response.headers["ETag"] == dev.active_bundle.etag != old_etag
    assert response.headers["Content-Type"] == LONG_POLL
    verified = verify_bundle(response.content, public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)
    assert verified.data["warden_registry"]["agents"]["billing-bot"]["status"] == "suspended"


def test_long_poll_without_change_is_answered_304_after_the_wait(dev, dev_token, app, held):
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
    # again at once, would busy-loop: not before the hold drawn for it, and never woken.
    (hold,) = held["holds"]
    assert 1 - EARLY_END_FRACTION <= hold <= 1 and elapsed >= hold
    assert held["waits"] and max(held["waits"]) <= hold and held["woken"] == []
    assert response.headers["ETag"] == current


def test_waits_that_start_together_end_spread_over_the_last_two_fifths_of_the_wait(dev, dev_token, held):
    """A fleet woken by one change re-polls together; exact waits would expire together, every
    wait seconds, as one burst of 304s. Each hold ends at its own moment in the last two fifths of
    the wait, and every poll is still answered 304 with the ETag it holds, as OPA needs."""
    wait, polls = 5, 20
    chosen = held["holds"]
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
    # before the end drawn for it), and no timer was set past the longest hold drawn, itself
    # short of the full wait: the ends are spread.
    elapsed = sorted(seconds for _, seconds in answers)
    assert all(seconds >= hold for seconds, hold in zip(elapsed, sorted(chosen), strict=True))
    # (Without a live Redis subscription a poll also waits in steps of notify.DB_POLL_SECONDS.)
    assert len(held["waits"]) >= polls and max(held["waits"]) <= max(chosen) < wait
    assert held["woken"] == []


def test_hold_seconds_draws_ends_across_the_last_two_fifths_of_the_wait(monkeypatch):
    import random

    draws = random.Random(20)
    monkeypatch.setattr(longpoll.random, "random", draws.random)
    holds = [longpoll.hold_seconds(30) for _ in range(2000)]
    earliest = 30 * (1 - EARLY_END_FRACTION)
    assert all(earliest <= hold <= 30 for hold in holds)
    assert min(holds) < earliest + 0.1 and max(holds) > 29.9  # the whole window, not a corner of it
    assert longpoll.hold_seconds(1) >= 1 - EARLY_END_FRACTION  # short waits too: no busy loop


def test_first_long_poll_without_etag_gets_the_bundle_at_once(dev, dev_token, held):
    async def scenario():
        async with asgi_client() as client:
            return await EmulatedOPA(client, token=dev_token, resource="bundles/dev").download(wait=30)

    response = run(scenario())
    assert response.status_code == 200
    assert held["waits"] == []  # answered without waiting at all
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


def test_many_concurrent_long_polls_are_all_woken_by_one_activation(dev, staging, staging_token, admin, held):
    async def scenario():
        async with asgi_client() as client:
            sidecars = [EmulatedOPA(client, token=staging_token, resource="bundles/staging") for _ in range(50)]
            polls = [asyncio.create_task(opa.download(wait=HELD_WAIT)) for opa in sidecars]
            await asyncio.sleep(0.5)
            assert not any(p.done() for p in polls)
            await in_thread(bundle_services.promote_bundle, dev, to=staging, by=admin)
            return await asyncio.gather(*polls)

    responses = run(scenario())
    assert {r.status_code for r in responses} == {200}
    assert len({r.headers["ETag"] for r in responses}) == 1
    assert len(set(held["woken"])) == 50 and {name for name, _ in held["woken"]} == {"staging"}


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

    response = run(
        _held_poll_then(activate_elsewhere, token=staging_token, resource="bundles/staging", etag=old_etag, wait=20)
    )
    staging.refresh_from_db()
    assert response.status_code == 200
    assert response.headers["ETag"] == staging.active_bundle.etag != old_etag


@pytest.mark.parametrize("ended_by", ["client-gone", "server-shutdown"])
def test_a_held_poll_ends_when_its_client_goes_away_and_leaves_no_waiter(dev, dev_token, ended_by):
    """The fast path stops holding a poll whose client disconnected (no answer is sent, the
    request ends normally); a cancellation from outside (the server shutting down) is not
    swallowed. Either way the poll's listener leaves the registry."""
    sent = []
    current = dev.active_bundle.etag

    async def scenario():
        gone = asyncio.Event()
        body_sent = []

        async def receive():
            if not body_sent:
                body_sent.append(1)
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        headers = {"authorization": f"Bearer {dev_token}", "if-none-match": current,
                   "prefer": f"modes=snapshot,delta;wait={HELD_WAIT}"}
        scope = {"type": "http", "method": "GET", "path": "/opa/bundles/dev", "root_path": "", "query_string": b"",
                 "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
        poll = asyncio.create_task(FAST_PATH(scope, receive, send))
        for _ in range(200):
            await asyncio.sleep(0.05)
            if "dev" in notify._waiters:
                break
        assert "dev" in notify._waiters and not poll.done()
        if ended_by == "client-gone":
            gone.set()
        else:
            poll.cancel()
        await asyncio.gather(poll, return_exceptions=True)
        return poll

    poll = run(scenario())
    assert poll.cancelled() is (ended_by == "server-shutdown")
    if ended_by == "client-gone":
        assert poll.exception() is None
    assert sent == []
    assert "dev" not in notify._waiters
