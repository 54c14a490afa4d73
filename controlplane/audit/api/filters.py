from datetime import UTC

import django_filters
from django.db import connection
from django.db.models.functions import TruncDate

from controlplane.audit.models import AuditEvent, Batch, QuarantinedRecord, QuarantineReason
from controlplane.core.filters import UTCDateTimeFilter


class AuditEventFilter(django_filters.FilterSet):
    agent = django_filters.CharFilter(field_name="agent__name")
    session = django_filters.CharFilter(field_name="session_id")
    tool = django_filters.CharFilter()
    effect = django_filters.ChoiceFilter(
        choices=[("allow", "allow"), ("deny", "deny"), ("require_approval", "require_approval")]
    )
    kind = django_filters.ChoiceFilter(
        choices=[("intent", "intent"), ("decision", "decision"), ("result", "result"), ("output", "output")]
    )
    rule = django_filters.CharFilter(method="filter_rule", help_text="A rule named in the decision's reasons.")
    time_after = UTCDateTimeFilter(field_name="time", lookup_expr="gte")
    time_before = UTCDateTimeFilter(field_name="time", lookup_expr="lt")
    status = django_filters.ChoiceFilter(
        method="filter_status",
        choices=[("verified", "verified"), ("checkpointed", "checkpointed"), ("pending_checkpoint", "pending_checkpoint")],
        help_text="Every event is verified; checkpointed ones are covered by a signed checkpoint. "
        "Records that failed verification are listed under /audit/quarantine/.",
    )
    record_id = django_filters.UUIDFilter()

    class Meta:
        model = AuditEvent
        fields = ["key_id", "batch"]

    def filter_rule(self, queryset, name, value):
        if connection.vendor == "postgresql":
            # The (rule ids, UTC day) index holds only events naming a rule, by day: say both
            # (implied by the other conditions, but the planner cannot prove it) so it is used.
            found = queryset.filter(rule_ids__contains=[value]).exclude(rule_ids=[])
            after, before = self.form.cleaned_data.get("time_after"), self.form.cleaned_data.get("time_before")
            if after or before:
                found = found.alias(utc_day=TruncDate("time", tzinfo=UTC))
            if after:
                found = found.filter(utc_day__gte=after.astimezone(UTC).date())
            if before:
                found = found.filter(utc_day__lte=before.astimezone(UTC).date())
            return found
        # SQLite has no JSON containment; match the quoted element in the stored text.
        return queryset.filter(rule_ids__icontains=f'"{value}"')

    def filter_status(self, queryset, name, value):
        upto = self.request.parser_context["view"].checkpointed_upto() if self.request else 0
        if value == "checkpointed":
            return queryset.filter(id__lte=upto)
        if value == "pending_checkpoint":
            return queryset.filter(id__gt=upto)
        return queryset


class QuarantineFilter(django_filters.FilterSet):
    agent = django_filters.CharFilter(field_name="agent__name")
    session = django_filters.CharFilter(field_name="session_id")
    reason = django_filters.MultipleChoiceFilter(choices=QuarantineReason.choices)
    time_after = UTCDateTimeFilter(field_name="quarantined_at", lookup_expr="gte")
    time_before = UTCDateTimeFilter(field_name="quarantined_at", lookup_expr="lt")

    class Meta:
        model = QuarantinedRecord
        fields = ["batch", "record_id", "key_id"]


class BatchFilter(django_filters.FilterSet):
    agent = django_filters.CharFilter(field_name="agent__name")
    status = django_filters.CharFilter()
    received_after = UTCDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = UTCDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = Batch
        fields = []
