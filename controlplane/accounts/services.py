"""Writes on users and API tokens; each records its change log entry."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from controlplane.accounts.models import APIToken, BearerCredential, hash_token, new_token_plaintext
from controlplane.accounts.roles import ALL_ROLES, Role
from controlplane.changelog.models import ChangeAction
from controlplane.changelog.services import record_change, snapshot
from controlplane.core.exceptions import ConflictError, InvalidInput

User = get_user_model()

# /api/v1/users/me/ names the caller, so no account may be called "me".
RESERVED_USERNAMES = frozenset({"me"})
USER_FIELDS_IN_LOG = ("username", "email", "first_name", "last_name", "is_active")


def _user_state(user) -> dict:
    state = {name: getattr(user, name) for name in USER_FIELDS_IN_LOG}
    state["roles"] = sorted(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))
    state["admin_site"] = user.is_staff
    return state


def _set_roles(user, roles: Iterable[str]) -> None:
    roles = set(roles)
    unknown = roles - set(ALL_ROLES)
    if unknown:
        raise InvalidInput(f"unknown role(s): {', '.join(sorted(unknown))}", field="roles")
    groups = [Group.objects.get_or_create(name=name)[0] for name in sorted(roles)]
    user.groups.remove(*user.groups.filter(name__in=ALL_ROLES))
    user.groups.add(*groups)
    # The admin role is what opens the Django admin (read-only for everything that has a
    # service); roles stay the one source of truth, so losing the role closes it again.
    is_admin = Role.ADMIN in roles
    if user.is_staff != is_admin or user.is_superuser != is_admin:
        user.is_staff = user.is_superuser = is_admin
        user.save(update_fields=["is_staff", "is_superuser"])
    user.__dict__.pop("_warden_roles", None)


def _check_password(password: str, user) -> None:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), field="password") from exc


@transaction.atomic
def create_user(
    *, username: str, email: str = "", roles: Iterable[str] = (), password: str | None = None, by
) -> User:
    """Create a person or a service account; without a password it can log in by token only."""
    if username.lower() in RESERVED_USERNAMES:
        raise InvalidInput(f"{username!r} is reserved", field="username")
    if User.objects.filter(username__iexact=username).exists():
        raise ConflictError(f"a user named {username!r} already exists", field="username")
    user = User(username=username, email=email)
    if password:
        _check_password(password, user)
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save()
    _set_roles(user, roles)
    record_change(user, action=ChangeAction.CREATE, by=by, after=_user_state(user))
    return user


@transaction.atomic
def update_user(user, *, by, roles: Iterable[str] | None = None, password: str | None = None, **fields) -> User:
    """Change a user's profile fields, roles, active flag or password."""
    before = _user_state(user)
    if user.pk == getattr(by, "pk", None) and fields.get("is_active") is False:
        raise InvalidInput("you cannot deactivate your own account", field="is_active")
    for name, value in fields.items():
        if name not in USER_FIELDS_IN_LOG or name == "username":
            raise InvalidInput(f"{name} cannot be changed here", field=name)
        setattr(user, name, value)
    if password:
        _check_password(password, user)
        user.set_password(password)
    user.save()
    if roles is not None:
        _set_roles(user, roles)
    after = _user_state(user)
    message = "password changed" if password else ""
    record_change(user, action=ChangeAction.UPDATE, by=by, before=before, after=after, message=message)
    return user


@transaction.atomic
def issue_credential(model: type[BearerCredential], *, by, **fields) -> tuple[BearerCredential, str]:
    """Create a bearer credential of `model`; returns it with its plaintext, which is never
    stored or shown again."""
    plaintext = new_token_plaintext()
    credential = model.objects.create(prefix=plaintext[:12], key_hash=hash_token(plaintext), **fields)
    record_change(credential, action=ChangeAction.CREATE, by=by, after=snapshot(credential))
    return credential, plaintext


@transaction.atomic
def revoke_credential(credential: BearerCredential, *, by) -> BearerCredential:
    """Revoke a token for good; it stays listed with its revocation time."""
    if credential.revoked_at is not None:
        raise ConflictError("the token is already revoked")
    before = snapshot(credential)
    credential.revoked_at = timezone.now()
    credential.save(update_fields=["revoked_at"])
    record_change(credential, action=ChangeAction.REVOKE, by=by, before=before, after=snapshot(credential))
    return credential


def create_token(*, user, name: str, expires_at: datetime | None = None, by) -> tuple[APIToken, str]:
    """Issue a user's API token."""
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("must be in the future", field="expires_at")
    return issue_credential(APIToken, user=user, name=name, expires_at=expires_at, by=by)


revoke_token = revoke_credential
