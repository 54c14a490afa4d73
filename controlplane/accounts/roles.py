"""The four roles of the control plane, held as Django groups of the same name."""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    ADMIN = "admin", "Administrator: manages agents, keys, users and everything else"
    POLICY_AUTHOR = "policy_author", "Policy author: writes policies and builds bundles"
    APPROVER = "approver", "Approver: decides approval requests and may pull the kill switch"
    AUDITOR = "auditor", "Auditor: reads everything, changes nothing"


ALL_ROLES: tuple[str, ...] = tuple(Role.values)


def roles_of(user) -> frozenset[str]:
    """The roles a user holds; a superuser holds admin. Cached on the user object per request."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    cached = getattr(user, "_warden_roles", None)
    if cached is None:
        names = set(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))
        if user.is_superuser:
            names.add(Role.ADMIN)
        cached = frozenset(names)
        user._warden_roles = cached
    return cached
