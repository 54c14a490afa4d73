"""Load the demo: one user per role with an API token and a console password (demo-admin
can also log in to the Django admin), the tool catalog, four agents with keys and scopes (one of
them suspended), the dev, staging and prod environments with a published and promoted
bundle and an environment token each, and one signed session of an agent ingested and
checkpointed, so the audit API has a verified timeline to show.

Idempotent: running it again keeps what is there. Tokens, the demo users' passwords and the
agents' private keys are written under var/ with mode 0600, so the README's examples can
read them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from agents_sdk.identity import AgentIdentity
from agents_sdk.keys import encode_public_key
from agents_sdk.records import ActionSigner
from controlplane.accounts import services as account_services
from controlplane.accounts.models import APIToken, hash_token
from controlplane.accounts.roles import ALL_ROLES
from controlplane.audit import checkpoints as audit_checkpoints
from controlplane.audit import ingestion as audit_ingestion
from controlplane.audit.models import AuditEvent
from controlplane.bundles import services as bundle_services
from controlplane.bundles.models import Environment
from controlplane.demo.data import DEMO_AGENTS, DEMO_ENVIRONMENTS, DEMO_TOOLS
from controlplane.identity import services
from controlplane.identity.models import Agent, AgentStatus
from controlplane.policies import services as policy_services
from controlplane.policies.models import Tool

User = get_user_model()


def _write_private(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)


class Command(BaseCommand):
    help = "Load demo users, tools, agents, environments, bundles and a signed session (embedded/dev mode only)."

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("seed_demo refuses to run with WARDEN_PRODUCTION on")
        var_dir = Path(settings.VAR_DIR)
        with transaction.atomic():
            seeder = self._ensure_users(var_dir)
            for spec in DEMO_TOOLS:
                if not Tool.objects.filter(name=spec["name"]).exists():
                    policy_services.create_tool(by=seeder, **spec)
            for spec in DEMO_AGENTS:
                self._ensure_agent(spec, var_dir, seeder)
        self._ensure_environments(var_dir, seeder)
        self._ensure_signed_session(var_dir, "code-assistant")
        self.stdout.write(self.style.SUCCESS(f"demo data ready: {Agent.objects.count()} agents"))
        self.stdout.write(f"API tokens: {var_dir / 'demo-tokens'}/<role>.token; agent keys: {var_dir / 'demo-keys'}")

    def _ensure_signed_session(self, var_dir: Path, name: str) -> None:
        """One signed, hash-chained session of the agent, ingested like a shipper would send it,
        so the audit API has a timeline to show."""
        agent = Agent.objects.get(name=name)
        if AuditEvent.objects.filter(agent=agent).exists():
            return
        pem = (var_dir / "demo-keys" / f"{name}.pem").read_bytes()
        private_key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private_key, Ed25519PrivateKey):
            raise CommandError(f"{var_dir / 'demo-keys' / name}.pem is not an Ed25519 key; delete it and seed again")
        identity = AgentIdentity(
            name=agent.name, owner=agent.owner_email, scopes=tuple(agent.scopes), private_key=private_key,
        )
        signer = ActionSigner(identity)
        with signer.session("demo-session-1") as session:
            session.intent("http_request", {"url": "https://api.github.com/repos/acme/app/pulls"})
            session.decision("allow")
            session.result("200 OK, 3 open pull requests")
            session.intent("file_delete", {"path": "/prod/app/config.yaml"})
            session.decision("require_approval", [{
                "rule": "no-prod-deletes", "message": "Production file deletion requires human approval",
                "controls": ["eu_ai_act.art14(1)"],
            }])
            session.output("Waiting for a person to approve deleting /prod/app/config.yaml")
        body = json.dumps({"records": signer.session_log()}).encode("utf-8")
        audit_ingestion.ingest_batch(agent=agent, key_id=identity.key_id, body=body)
        # What the beat job does every minute, done once so the log verifies right away.
        audit_checkpoints.create_checkpoints()

    def _ensure_environments(self, var_dir: Path, by) -> None:
        """dev, staging and prod, the current policies published to dev and promoted onwards,
        and one bearer token per environment for OPA or a sidecar."""
        for position, name in enumerate(DEMO_ENVIRONMENTS):
            environment = Environment.objects.filter(name=name).first()
            if environment is None:
                environment = bundle_services.create_environment(name=name, position=position, by=by)
            token_file = var_dir / "demo-tokens" / f"opa-{name}.token"
            if not token_file.exists():
                _, plaintext = bundle_services.create_environment_token(environment, name="demo", by=by)
                _write_private(token_file, plaintext.encode())
        dev = Environment.objects.get(name="dev")
        if dev.active_bundle_id is None:
            bundle_services.publish_policies(dev, by=by, message="demo: library policies")
        for name in DEMO_ENVIRONMENTS[1:]:
            if Environment.objects.get(name=name).active_bundle_id is None:
                bundle_services.promote_bundle(dev, to=Environment.objects.get(name=name), by=by)

    def _ensure_users(self, var_dir: Path):
        admin = User.objects.filter(username="demo-admin").first()
        for role in ALL_ROLES:
            username = f"demo-{role.replace('_', '-')}"
            user = User.objects.filter(username=username).first()
            if user is None:
                user = account_services.create_user(
                    username=username, email=f"{username}@example.com", roles=[role], by=admin
                )
            if role == "admin":
                admin = user
            self._ensure_token(user, var_dir / "demo-tokens" / f"{role}.token", by=admin)
            self._ensure_password(user, var_dir / f"{username}.password", by=admin)
        return admin

    def _ensure_password(self, user, path: Path, *, by) -> None:
        """Every demo user can log in to the console; the password is kept in var/ (0600)."""
        if path.exists():
            return
        password = os.urandom(12).hex()
        account_services.update_user(user, by=by, password=password)
        _write_private(path, password.encode())
        self.stdout.write(f"console login: {user.username} / password in {path}")

    def _ensure_token(self, user, path: Path, *, by) -> None:
        if path.exists():
            existing = APIToken.objects.filter(key_hash=hash_token(path.read_text().strip())).first()
            if existing and existing.is_usable:
                return
        _, plaintext = account_services.create_token(user=user, name="demo", by=by)
        _write_private(path, plaintext.encode())

    def _ensure_agent(self, spec: dict, var_dir: Path, by) -> None:
        spec = dict(spec)
        suspend_reason = spec.pop("suspend_reason", None)
        if Agent.objects.filter(name=spec["name"]).exists():
            return
        agent = services.register_agent(by=by, **spec)
        private_key = Ed25519PrivateKey.generate()
        services.add_agent_key(agent, public_key=encode_public_key(private_key.public_key()), label="demo", by=by)
        pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_private(var_dir / "demo-keys" / f"{agent.name}.pem", pem)
        if suspend_reason and agent.status == AgentStatus.ACTIVE:
            services.suspend_agent(agent, by=by, reason=suspend_reason)
