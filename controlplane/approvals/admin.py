from django.contrib import admin

from controlplane.approvals.models import ApprovalRequest, ApprovalRule, ReleaseGate, WebhookEndpoint


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "state", "agent", "environment", "tool", "created_at"]
    list_filter = ["state", "kind", "environment"]
    exclude = ["args", "grant_token"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # decisions go through the workflow (services), which logs them


admin.site.register(ApprovalRule)
admin.site.register(ReleaseGate)
admin.site.register(WebhookEndpoint)
