"""Role checks on every endpoint.

Every role may read; writes need the roles a view names. A view declares
`write_roles` (default: admin only) and may name roles per custom action in
`action_roles`, e.g. {"suspend": ("admin", "approver")}.
"""

from __future__ import annotations

from rest_framework import permissions

from controlplane.accounts.roles import ALL_ROLES, Role, roles_of

DEFAULT_WRITE_ROLES: tuple[str, ...] = (Role.ADMIN,)


class RolePermission(permissions.BasePermission):
    message = "your role does not allow this"

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not getattr(user, "is_authenticated", False):
            return False
        held = roles_of(user)
        action = getattr(view, "action", None)
        action_roles = getattr(view, "action_roles", {})
        if action in action_roles:
            allowed = action_roles[action]
        elif request.method in permissions.SAFE_METHODS:
            allowed = getattr(view, "read_roles", ALL_ROLES)
        else:
            allowed = getattr(view, "write_roles", DEFAULT_WRITE_ROLES)
        return bool(held & set(allowed))
