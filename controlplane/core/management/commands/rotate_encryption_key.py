"""Re-encrypt every stored private key under the current WARDEN_ENCRYPTION_KEY.

Run it after changing WARDEN_ENCRYPTION_KEY or WARDEN_SECRET_KEY with the old value in the
matching *_FALLBACKS variable. Sealed audit records are left as they are: checkpoints
commit to their exact bytes, so keep the old key in WARDEN_ENCRYPTION_KEY_FALLBACKS as
long as records sealed under it are retained.
"""

from __future__ import annotations

from cryptography.fernet import InvalidToken
from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from controlplane.core.crypto import secrets_at_rest

# Columns holding private keys encrypted with secrets_at_rest(), by naming convention.
ENCRYPTED_PREFIX = "encrypted_"


def encrypted_columns() -> list[tuple[type, str]]:
    return [
        (model, field.name)
        for model in apps.get_models()
        for field in model._meta.get_fields()
        if field.name.startswith(ENCRYPTED_PREFIX) and field.get_internal_type() == "BinaryField"
    ]


class Command(BaseCommand):
    help = "Re-encrypt stored private keys (bundle and checkpoint signing keys) under the current encryption key."

    @transaction.atomic
    def handle(self, *args, **options):
        fernet = secrets_at_rest()
        for model, column in encrypted_columns():
            rotated = 0
            for row in model.objects.select_for_update().only(model._meta.pk.name, column):
                try:
                    token = fernet.rotate(bytes(getattr(row, column)))
                except InvalidToken:
                    raise CommandError(
                        f"{model._meta.label} {row.pk}: {column} cannot be decrypted with the current key or any "
                        "fallback; put the key it was encrypted with in WARDEN_ENCRYPTION_KEY_FALLBACKS (or the old "
                        "secret key in WARDEN_SECRET_KEY_FALLBACKS) and run again"
                    ) from None
                setattr(row, column, token)
                row.save(update_fields=[column])
                rotated += 1
            self.stdout.write(f"{model._meta.label}.{column}: {rotated} re-encrypted")
