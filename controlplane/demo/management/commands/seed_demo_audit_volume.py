"""Add many signed audit events to the demo (after `seed_demo`): sessions of the demo agent
code-assistant, signed with its demo key, ingested and verified like a shipper's batches,
then checkpointed. For the console's end-to-end test of the capped count ("10,000+") and
the Rule filter; not part of `seed_demo`, so other tests keep their small log.

Every decision names `demo-volume` except those of the last session, which name
`demo-volume-rare` (three decisions), so a rule search has a few known matches among many.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from controlplane.audit import checkpoints as audit_checkpoints
from controlplane.audit import conf
from controlplane.audit import ingestion as audit_ingestion
from controlplane.identity.models import Agent

AGENT = "code-assistant"
SESSION_DECISIONS = 50  # a session: intent, decision, result, 50 times
RARE_DECISIONS = 3


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--events", type=int, default=10_200, help="how many events to add (at least)")

    def handle(self, *args, events: int, **options):
        var_dir = Path(settings.VAR_DIR)
        agent = Agent.objects.get(name=AGENT)
        pem = (var_dir / "demo-keys" / f"{AGENT}.pem").read_bytes()
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise CommandError(f"{AGENT}'s demo key is not an Ed25519 key: run seed_demo first")
        identity = AgentIdentity(name=agent.name, owner=agent.owner_email, scopes=tuple(agent.scopes), private_key=key)
        if identity.key_id not in set(agent.keys.values_list("key_id", flat=True)):
            raise CommandError(f"{AGENT}'s demo key is not registered: run seed_demo first")
        signer = ActionSigner(identity)
        sessions = -(-events // (3 * SESSION_DECISIONS))
        for number in range(sessions):
            last = number == sessions - 1
            with signer.session(f"volume-{number}") as session:
                for step in range(SESSION_DECISIONS):
                    rule = "demo-volume-rare" if last and step < RARE_DECISIONS else "demo-volume"
                    session.intent("http_request", {"url": f"https://example.com/{number}/{step}"})
                    session.decision("deny", [{"rule": rule, "message": "demo volume", "controls": []}])
                    session.result("refused")
        records = signer.session_log()  # every session's, in signing order
        size = conf.max_batch_records()
        for start in range(0, len(records), size):
            body = json.dumps({"records": records[start : start + size]}).encode("utf-8")
            audit_ingestion.ingest_batch(agent=agent, key_id=identity.key_id, body=body)
        audit_checkpoints.create_checkpoints()
        self.stdout.write(f"{len(records)} signed events of {AGENT} in {sessions} sessions added")
