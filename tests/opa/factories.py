"""Factories for what engines report: OPA/sidecar instances (status) and decisions."""

import uuid

import factory
from django.utils import timezone

from controlplane.opa.models import DecisionLog, OPAInstance
from tests.bundles.factories import EnvironmentFactory


class OPAInstanceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OPAInstance

    environment = factory.SubFactory(EnvironmentFactory)
    instance_id = factory.LazyFunction(lambda: str(uuid.uuid4()))
    version = "1.4.2"
    active_revision = ""


class DecisionLogFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DecisionLog

    decision_id = factory.LazyFunction(lambda: str(uuid.uuid4()))
    environment = factory.SubFactory(EnvironmentFactory)
    instance_id = factory.LazyFunction(lambda: str(uuid.uuid4()))
    path = "warden/decision"
    input = factory.LazyFunction(lambda: {"agent": {"id": "bot"}})
    result = factory.LazyFunction(lambda: {"allow": False, "effect": "deny"})
    timestamp = factory.LazyFunction(timezone.now)
    event = factory.LazyAttribute(lambda o: {"decision_id": o.decision_id, "path": o.path})
