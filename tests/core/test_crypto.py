"""Rotating the secret key or the encryption key keeps stored private keys readable, and
`rotate_encryption_key` re-encrypts them under the new key."""

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError

from controlplane.bundles.models import SigningKey
from controlplane.bundles.signing import active_signing_key, private_key_pem
from controlplane.core.management.commands.rotate_encryption_key import encrypted_columns

pytestmark = pytest.mark.django_db


def test_a_rotated_secret_key_stays_readable_through_its_fallback_then_rotate_re_encrypts(settings):
    key = active_signing_key()
    pem = private_key_pem(key)
    old_secret = settings.SECRET_KEY
    settings.SECRET_KEY = "the new secret key, long enough for production " * 2
    with pytest.raises(RuntimeError, match="cannot be decrypted"):
        private_key_pem(SigningKey.objects.get(pk=key.pk))
    settings.SECRET_KEY_FALLBACKS = [old_secret]
    assert private_key_pem(SigningKey.objects.get(pk=key.pk)) == pem
    settings.WARDEN_ENCRYPTION_KEY = Fernet.generate_key().decode()
    out = io.StringIO()
    call_command("rotate_encryption_key", stdout=out)
    assert "bundles.SigningKey.encrypted_private_key: 1 re-encrypted" in out.getvalue()
    settings.SECRET_KEY_FALLBACKS = []  # the old key can now be dropped
    assert private_key_pem(SigningKey.objects.get(pk=key.pk)) == pem
    assert Fernet(settings.WARDEN_ENCRYPTION_KEY.encode()).decrypt(
        bytes(SigningKey.objects.get(pk=key.pk).encrypted_private_key)
    ) == pem


def test_rotation_refuses_a_key_it_cannot_read_and_says_which_fallback_to_set(settings):
    active_signing_key()
    settings.SECRET_KEY = "an unrelated secret key " * 3
    with pytest.raises(CommandError, match="WARDEN_ENCRYPTION_KEY_FALLBACKS"):
        call_command("rotate_encryption_key", stdout=io.StringIO())


def test_every_private_key_column_is_rotated():
    columns = {f"{model._meta.label}.{column}" for model, column in encrypted_columns()}
    assert {"bundles.SigningKey.encrypted_private_key", "audit.CheckpointKey.encrypted_private_key"} <= columns
