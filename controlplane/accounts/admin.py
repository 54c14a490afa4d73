from django.contrib import admin

from controlplane.accounts.models import APIToken


@admin.register(APIToken)
class APITokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "user__username", "prefix")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")

    def has_add_permission(self, request):
        # A token's plaintext must be shown once to its creator: issue tokens via the API.
        return False
