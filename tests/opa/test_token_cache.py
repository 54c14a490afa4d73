"""The environment-token cache (controlplane.opa.authentication): a fleet's requests share
one lookup per token, a busy token is looked up again before its entry expires, and neither
lets a revoked or unknown token in for longer than TOKEN_CACHE_SECONDS after the lookup
that last saw it valid started."""

import asyncio

import pytest
from django.db import OperationalError

from controlplane.bundles import services as bundle_services
from controlplane.opa import authentication
from controlplane.opa.authentication import TOKEN_CACHE_SECONDS, AuthenticationFailed, aauthenticate
from tests.opa.sidecar import in_thread, run


@pytest.fixture
def clock(monkeypatch):
    """The cache's clock, moved by hand (asyncio keeps the real one)."""
    now = [1000.0]
    monkeypatch.setattr(authentication, "_clock", lambda: now[0])
    return now


@pytest.fixture
def lookups(monkeypatch):
    """Every database lookup of a token, in order."""
    seen = []
    real = authentication._lookup

    def counted(key_hash):
        seen.append(key_hash)
        return real(key_hash)

    monkeypatch.setattr(authentication, "_lookup", counted)
    return seen


def bearer(token: str) -> str:
    return f"Bearer {token}"


async def _settled():
    """Let a background refresh finish (it runs on the database threads)."""
    for _ in range(200):
        if not authentication._lookups:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("a token lookup never finished")


def test_concurrent_requests_with_an_uncached_token_share_one_lookup(dev, dev_token, lookups):
    async def scenario():
        return await asyncio.gather(*(aauthenticate(bearer(dev_token)) for _ in range(50)))

    clients = run(scenario())
    assert len(lookups) == 1
    assert {client.environment_name for client in clients} == {"dev"}


def test_concurrent_requests_with_an_unknown_token_share_one_lookup_and_are_all_refused(dev, lookups):
    async def scenario():
        return await asyncio.gather(*(aauthenticate(bearer("made-up")) for _ in range(20)), return_exceptions=True)

    answers = run(scenario())
    assert len(lookups) == 1
    assert all(isinstance(answer, AuthenticationFailed) for answer in answers)


def test_a_busy_token_is_looked_up_again_before_its_entry_expires(dev, dev_token, clock, lookups):
    async def scenario():
        await aauthenticate(bearer(dev_token))
        clock[0] += TOKEN_CACHE_SECONDS - authentication.REFRESH_AHEAD_SECONDS / 2  # in the refresh window
        await aauthenticate(bearer(dev_token))  # answered from the cache, refresh started
        await _settled()
        clock[0] += TOKEN_CACHE_SECONDS - authentication.REFRESH_AHEAD_SECONDS  # past the first entry's end
        return await aauthenticate(bearer(dev_token))

    assert run(scenario()).environment_name == "dev"
    assert len(lookups) == 2  # the request past the first entry's end found the refreshed one


def test_a_revoked_token_is_refused_once_the_lookup_that_saw_it_valid_is_too_old(dev, dev_token, admin, clock):
    async def authenticate():
        return await aauthenticate(bearer(dev_token))

    run(authenticate())
    bundle_services.revoke_environment_token(dev.tokens.get(), by=admin)
    clock[0] += TOKEN_CACHE_SECONDS - 0.001
    assert run(authenticate()).environment_name == "dev"  # the documented window
    clock[0] += 0.001
    with pytest.raises(AuthenticationFailed):
        run(authenticate())


def test_a_refresh_ahead_sees_a_revocation_and_the_token_is_refused_from_then_on(dev, dev_token, admin, clock):
    token = dev.tokens.get()

    async def scenario():
        await aauthenticate(bearer(dev_token))
        await in_thread(bundle_services.revoke_environment_token, token, by=admin)
        clock[0] += TOKEN_CACHE_SECONDS - authentication.REFRESH_AHEAD_SECONDS / 2
        still = await aauthenticate(bearer(dev_token))  # within the window; starts the refresh
        await _settled()
        with pytest.raises(AuthenticationFailed):
            await aauthenticate(bearer(dev_token))  # the refresh saw the revocation: refused at once
        return still

    assert run(scenario()).environment_name == "dev"


def test_a_failed_refresh_does_not_extend_the_entry(dev, dev_token, admin, clock, monkeypatch):
    real = authentication._lookup
    failing = [False]

    def lookup(key_hash):
        if failing[0]:
            raise OperationalError("the database went away")
        return real(key_hash)

    monkeypatch.setattr(authentication, "_lookup", lookup)
    token = dev.tokens.get()

    async def scenario():
        await aauthenticate(bearer(dev_token))
        await in_thread(bundle_services.revoke_environment_token, token, by=admin)
        failing[0] = True
        clock[0] += TOKEN_CACHE_SECONDS - authentication.REFRESH_AHEAD_SECONDS / 2
        await aauthenticate(bearer(dev_token))  # the refresh fails in the background
        await _settled()
        clock[0] += authentication.REFRESH_AHEAD_SECONDS / 2  # the first entry's end
        failing[0] = False
        await aauthenticate(bearer(dev_token))

    with pytest.raises(AuthenticationFailed):
        run(scenario())
