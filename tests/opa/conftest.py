"""Fixtures for the OPA protocol tests: environments with real signed bundles, built by
the services, and environment tokens. The HTTP tests run the ASGI application with
committed data (transactional tests), because the async views read through their own
database threads, as they do in production."""

import pytest
from celery import current_app as celery_app

from controlplane.bundles import services as bundle_services
from controlplane.bundles.models import SigningKey
from controlplane.opa.authentication import forget_cached_tokens
from controlplane.opa.database import close_db_connections
from controlplane.opa.selectors import forget_cached_bundles
from tests.accounts.factories import UserFactory
from tests.identity.factories import AgentFactory
from tests.tasks_inline import tasks_run_inline


@pytest.fixture(autouse=True)
def uploads_stored_in_the_request():
    """Status reports and decision logs are stored by the request that carries them, as in
    the embedded default; tests/opa/test_upload_queue.py turns the Redis queue on."""
    with tasks_run_inline():
        yield


@pytest.fixture
def opa_db(transactional_db):
    forget_cached_tokens()
    forget_cached_bundles()
    yield
    # Before the tables are flushed: PostgreSQL keeps no connection of ours open.
    close_db_connections()
    forget_cached_tokens()
    forget_cached_bundles()


@pytest.fixture
def admin(opa_db):
    return UserFactory(username="opa-admin", roles=["admin"])


@pytest.fixture
def agent(opa_db):
    """An active agent running in dev (created before dev's first bundle, so it is in it)."""
    return AgentFactory(name="billing-bot", environments=["dev"])


@pytest.fixture
def dev(admin, agent):
    environment = bundle_services.create_environment(name="dev", by=admin)
    bundle_services.publish_policies(environment, by=admin)
    environment.refresh_from_db()
    return environment


@pytest.fixture
def staging(admin):
    return bundle_services.create_environment(name="staging", by=admin, position=1)


@pytest.fixture
def dev_token(dev, admin) -> str:
    return bundle_services.create_environment_token(dev, name="opa-dev", by=admin)[1]


@pytest.fixture
def staging_token(staging, admin) -> str:
    return bundle_services.create_environment_token(staging, name="opa-staging", by=admin)[1]


@pytest.fixture
def signing_key(dev) -> SigningKey:
    """The key that signed dev's bundle; its public PEM is what an operator gives OPA."""
    return SigningKey.objects.get(pk=dev.active_bundle.signing_key_id)


@pytest.fixture
def logs_token(admin) -> str:
    """A token of a dev environment with no bundle: decision logs need no more."""
    environment = bundle_services.create_environment(name="dev", by=admin)
    return bundle_services.create_environment_token(environment, name="opa-dev", by=admin)[1]
