import base64

import factory
from django.db import connection, transaction
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


def set_key_created_at(key_id: str, when) -> None:
    """Give a key another creation time, as test set-up only: the key-history trigger (audit
    migration 0006) refuses it to everyone, so on PostgreSQL this goes past triggers
    (session_replication_role, superuser only), as no application role can."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("UPDATE identity_agentkey SET created_at = %s WHERE key_id = %s", [when, key_id])
