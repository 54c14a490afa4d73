"""`manage.py setup_db_roles`: the PostgreSQL roles the audit log's protection relies on."""

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection

from controlplane.audit.database_roles import RoleNames, setup_roles


class Command(BaseCommand):
    help = (
        "Create the owner, app and retention roles and hand out privileges so the app role cannot change or "
        "remove audit rows, the change log or policy revisions. Run as a superuser after `migrate`."
    )

    def add_arguments(self, parser):
        defaults = RoleNames()
        parser.add_argument("--owner", default=defaults.owner, help="role that owns the tables and runs migrations")
        parser.add_argument("--app", default=defaults.app, help="role the web process and workers connect as")
        parser.add_argument("--retention", default=defaults.retention, help="role the retention job connects as")

    def handle(self, *args, **options):
        if connection.vendor != "postgresql":
            raise CommandError("database roles exist only on PostgreSQL; SQLite (the embedded default) has none")
        try:
            done = setup_roles(RoleNames(owner=options["owner"], app=options["app"], retention=options["retention"]))
        except DatabaseError as exc:
            raise CommandError(f"{exc}".strip() + " (run this as a superuser, after `manage.py migrate`)") from exc
        for line in done:
            self.stdout.write(line)
