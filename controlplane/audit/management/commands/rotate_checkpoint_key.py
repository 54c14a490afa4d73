"""`manage.py rotate_checkpoint_key`: replace the key that signs audit checkpoints, logged."""

from django.core.management.base import BaseCommand

from controlplane.audit import checkpoints


class Command(BaseCommand):
    help = (
        "Generate a new checkpoint signing key and deactivate the current one (recorded in the change log). "
        "Pin both public keys in WARDEN_AUDIT_CHECKPOINT_PUBLIC_KEYS for the overlap."
    )

    def handle(self, *args, **options):
        new, old = checkpoints.rotate_checkpoint_key()
        pinned = ",".join(key.public_key for key in (old, new) if key is not None)
        self.stdout.write(f"new checkpoint key {new.key_id}")
        self.stdout.write(f"WARDEN_AUDIT_CHECKPOINT_PUBLIC_KEYS={pinned}")
