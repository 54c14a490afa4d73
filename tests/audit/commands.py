"""`verify_audit` as the tests call it: its report and whether it found the log intact."""

from io import StringIO

from django.core.management import CommandError, call_command


def verify(*args: str) -> tuple[str, bool]:
    out = StringIO()
    try:
        call_command("verify_audit", *args, stdout=out)
        return out.getvalue(), True
    except CommandError:
        return out.getvalue(), False
