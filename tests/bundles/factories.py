"""Factories for environments and bundles. Environments are made through the service (so
the change log has them); bundles are real, signed builds of the policy library."""

import factory
from django.db import transaction

from controlplane.bundles import services
from controlplane.bundles.models import Bundle, Environment


def environment(name: str, *, by, position: int = 0) -> Environment:
    return services.create_environment(name=name, position=position, by=by)


class EnvironmentFactory(factory.django.DjangoModelFactory):
    """A bare environment row (no change-log entry), for tests of reads."""

    class Meta:
        model = Environment
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"env-{n}")
    position = factory.Sequence(lambda n: n)


def built_bundle(environment: Environment, *, activate: bool = True, by=None, reason: str = "test") -> Bundle:
    """A real signed bundle of the current policies and registry for `environment`, built
    without running the policy tests (tests of delivery need a bundle, not a release)."""
    with transaction.atomic():
        bundle = services.build_bundle(environment, policy_files=services.current_policy_files(), by=by, reason=reason)
        if activate:
            services.activate_bundle(environment, bundle, by=by, action="activate", reason=reason)
    environment.refresh_from_db()
    return bundle
