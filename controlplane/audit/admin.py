"""Read-only admin views: the audit log is changed only by its services."""

from django.contrib import admin

from controlplane.audit.models import AuditEvent, AuditExport, Batch, Checkpoint, QuarantinedRecord, RetentionPolicy
from controlplane.core.admin import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "agent", "session_id", "seq", "kind", "tool", "effect", "time"]
    list_filter = ["kind", "effect"]
    search_fields = ["session_id", "tool", "record_id"]
    exclude = ["sealed_record"]


@admin.register(QuarantinedRecord)
class QuarantinedRecordAdmin(ReadOnlyAdmin):
    list_display = ["id", "agent", "reason", "session_id", "seq", "quarantined_at"]
    list_filter = ["reason"]
    exclude = ["sealed_record"]


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = ["id", "agent", "record_count", "status", "event_count", "quarantined_count", "received_at"]
    list_filter = ["status"]
    exclude = ["body"]


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = ["sequence", "kind", "first_event_id", "last_event_id", "event_count", "created_at"]
    exclude = ["entries"]


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(ReadOnlyAdmin):
    list_display = ["environment", "agent", "days", "updated_at"]


@admin.register(AuditExport)
class AuditExportAdmin(ReadOnlyAdmin):
    list_display = ["id", "user_name", "originals", "sessions", "query", "exported_at"]
    list_filter = ["originals"]
