import base64

import factory
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents_sdk.keys import encode_public_key, key_fingerprint
from controlplane.identity.models import Agent, AgentKey


def new_public_key() -> str:
    """A fresh Ed25519 public key in Warden's wire format (base64 of the raw bytes)."""
    return encode_public_key(Ed25519PrivateKey.generate().public_key())


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent

    name = factory.Sequence(lambda n: f"agent-{n}")
    display_name = factory.LazyAttribute(lambda a: a.name.replace("-", " ").title())
    owner_email = "owner@example.com"
    team = "platform"
    scopes = factory.LazyFunction(lambda: ["read:tickets"])
    environments = factory.LazyFunction(lambda: ["dev"])


class AgentKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AgentKey

    agent = factory.SubFactory(AgentFactory)
    public_key = factory.LazyFunction(new_public_key)
    key_id = factory.LazyAttribute(lambda k: key_fingerprint(base64.b64decode(k.public_key)))
