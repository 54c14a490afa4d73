"""`manage.py verify_audit`: prove the stored audit log matches its signed checkpoints and the witness."""

import json

from django.core.management.base import BaseCommand, CommandError

from agents_sdk.keys import InvalidPublicKey
from controlplane.audit import checkpoints, integrity


class Command(BaseCommand):
    help = (
        "Check the audit log against its signed checkpoints and the witness file, and name every event changed, "
        "removed, inserted or moved, removed checkpoints and a cut tail."
    )

    def add_arguments(self, parser):
        parser.add_argument("--checkpoint", action="store_true", help="first checkpoint the events not yet covered")
        parser.add_argument(
            "--public-key", action="append", default=[], metavar="KEY",
            help="a trusted checkpoint public key (base64 or PEM); repeat during a rotation. "
                 "Default: WARDEN_AUDIT_CHECKPOINT_PUBLIC_KEYS",
        )
        parser.add_argument("--witness", default=None, help="the witness file (default: WARDEN_AUDIT_WITNESS_PATH)")
        parser.add_argument("--witness-url", default=None, metavar="URL",
                            help="the HTTP witness collector's log, e.g. https://witness.example/logs/prod "
                                 "(default: WARDEN_AUDIT_WITNESS_URL; '' for none)")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, **options):
        if options["checkpoint"]:
            checkpoints.create_checkpoints()
        try:
            report = integrity.verify_log(
                public_keys=options["public_key"], witness_path=options["witness"], witness_url=options["witness_url"]
            )
        except InvalidPublicKey as exc:
            raise CommandError(f"--public-key: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            if report.key_source == "database":
                self.stdout.write(
                    "WARNING: no checkpoint key is pinned (WARDEN_AUDIT_CHECKPOINT_PUBLIC_KEYS or --public-key): "
                    "signatures were checked against keys stored in the database, which the app role can add to"
                )
            for problem in report.problems:
                self.stdout.write(f"{problem.problem.upper()}: {problem.message}")
            summary = (
                f"{report.checkpoints} checkpoints, {report.events_checked} events checked, "
                f"{report.events_removed_by_retention} removed by retention, "
                f"{report.events_not_checkpointed} not yet checkpointed, {report.witness_entries} witness entries"
            )
            if not report.ok:
                summary += (
                    f"; affected events {report.first_affected_event_id}…{report.last_affected_event_id}, "
                    f"checkpoints {report.first_affected_checkpoint}…{report.last_affected_checkpoint}"
                )
            self.stdout.write(("OK: " if report.ok else f"FAIL: {len(report.problems)} problem(s); ") + summary)
        if not report.ok:
            raise CommandError("the audit log does not match its checkpoints", returncode=1)
