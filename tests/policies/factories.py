"""Factories for the tool catalog and organisation policy modules, made through the services
so the change log and module revisions are as in production."""

import factory

from controlplane.policies import services
from controlplane.policies.models import Tool


class ToolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tool
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"tool_{n}")
    scopes = factory.LazyFunction(lambda: ["read:tickets"])
    category = "other"


def policy_module(path: str, source: str, *, by):
    return services.save_policy_module(path=path, source=source, by=by)
