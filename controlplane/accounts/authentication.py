"""`Authorization: Token wdn_…` (or `Bearer wdn_…`) authentication for automation."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from controlplane.accounts.models import APIToken, hash_token

# last_used_at is refreshed at most this often, so reads don't each cost a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class APITokenAuthentication(authentication.BaseAuthentication):
    keywords = ("token", "bearer")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode("latin-1").lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("the Authorization header must be 'Token <token>'")
        try:
            plaintext = header[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("the token contains characters that no token has") from exc
        return self.authenticate_token(plaintext)

    def authenticate_token(self, plaintext: str):
        token = APIToken.objects.select_related("user").filter(key_hash=hash_token(plaintext)).first()
        # One message for every failure, so a caller cannot probe which tokens exist.
        if token is None or not token.is_usable or not token.user.is_active:
            raise exceptions.AuthenticationFailed("invalid, expired or revoked token")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            APIToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request):
        return "Token"
