"""`manage.py verify_audit`: prove the stored audit log matches its signed checkpoints."""

import json

from django.core.management.base import BaseCommand, CommandError

from controlplane.audit import checkpoints


class Command(BaseCommand):
    help = "Check the audit log against its signed checkpoints and name every event changed, removed or moved."

    def add_arguments(self, parser):
        parser.add_argument("--checkpoint", action="store_true", help="first checkpoint the events not yet covered")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, **options):
        if options["checkpoint"]:
            checkpoints.create_checkpoints()
        report = checkpoints.verify_log()
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            for problem in report.problems:
                self.stdout.write(f"{problem.problem.upper()}: {problem.message}")
            summary = (
                f"{report.checkpoints} checkpoints, {report.events_checked} events checked, "
                f"{report.events_removed_by_retention} removed by retention, "
                f"{report.events_not_checkpointed} not yet checkpointed"
            )
            self.stdout.write(("OK: " if report.ok else f"FAIL: {len(report.problems)} problem(s); ") + summary)
        if not report.ok:
            raise CommandError("the audit log does not match its checkpoints", returncode=1)
