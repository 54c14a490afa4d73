from django.contrib import admin

from controlplane.bundles.models import Bundle, BundleActivation, Environment, EnvironmentToken, SigningKey
from controlplane.core.admin import ReadOnlyAdmin


@admin.register(Environment)
class EnvironmentAdmin(ReadOnlyAdmin):
    list_display = ("name", "position", "active_bundle", "decision_logging", "updated_at")


@admin.register(Bundle)
class BundleAdmin(ReadOnlyAdmin):
    list_display = ("environment", "revision", "size", "signing_key", "reason", "created_at")
    list_filter = ("environment",)
    search_fields = ("revision", "reason")
    exclude = ("archive", "members")


@admin.register(BundleActivation)
class BundleActivationAdmin(ReadOnlyAdmin):
    list_display = ("environment", "bundle", "previous_bundle", "activated_by", "reason", "activated_at")
    list_filter = ("environment",)


@admin.register(EnvironmentToken)
class EnvironmentTokenAdmin(ReadOnlyAdmin):
    list_display = ("name", "environment", "prefix", "created_at", "last_used_at", "revoked_at")
    exclude = ("key_hash",)


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdmin):
    list_display = ("kid", "algorithm", "is_active", "created_at", "retired_at")
    exclude = ("encrypted_private_key",)
