"""Users, roles and tokens in the Django admin: shown, never changed there.

Roles are granted, tokens issued and revoked, and users changed through the API (the
services), so every change reaches the change log. An admin that could reassign a token
to another user or edit a role grant would impersonate and escalate without a trace.
"""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from controlplane.accounts.models import APIToken
from controlplane.core.admin import ReadOnlyAdmin

User = get_user_model()

for model in (User, Group):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


@admin.register(User)
class UserAdmin(ReadOnlyAdmin):
    list_display = ("username", "email", "is_active", "is_staff", "last_login", "date_joined")
    list_filter = ("is_active", "groups")
    search_fields = ("username", "email")
    exclude = ("password", "user_permissions")


@admin.register(Group)
class RoleAdmin(ReadOnlyAdmin):
    list_display = ("name",)
    exclude = ("permissions",)


@admin.register(APIToken)
class APITokenAdmin(ReadOnlyAdmin):
    list_display = ("name", "user", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "user__username", "prefix")
    exclude = ("key_hash",)
