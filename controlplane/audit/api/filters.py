import django_filters
from django.db import connection
from django.db.models import F
from rest_framework.filters import OrderingFilter

from controlplane.audit import partitions
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
    # Not stripped: a rule id is matched exactly, spaces and all.
    rule = django_filters.CharFilter(method="filter_rule", strip=False, help_text="A rule named in the decision's reasons.")
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
            # Through the rule table (partitions.rule_table_sql), keyed (rule, time, event): joined
            # on the event's key, in order of time, so a page reads as many index entries as it
            # shows. The time range is given to both tables (each then reads only its months).
            key = partitions.rule_key(value)
            # The event's time as a closed range, not `=`: the planner multiplies the two
            # equalities' selectivities (id and time), estimates one row, and then joins and
            # sorts every match of the rule (over 60 s for a common rule at 50 M events);
            # with the range it estimates within about 10x of the matches. The page is
            # ordered by the rule table's key (EventOrdering), read newest first.
            hits = {"rule_hits__rule_id": key, "rule_hits__time__range": (F("time"), F("time"))}
            after, before = self.form.cleaned_data.get("time_after"), self.form.cleaned_data.get("time_before")
            if after:
                hits["rule_hits__time__gte"] = after
            if before:
                hits["rule_hits__time__lt"] = before
            if key.startswith(partitions.RULE_DIGEST_PREFIX):
                # A digest key (a long id, or an id spelled like a digest) may stand for two
                # ids: recheck the event's. Not otherwise: the planner cannot estimate JSON
                # containment, and would fetch and sort every match instead of reading 50.
                hits["rule_ids__contains"] = [value]
            return queryset.filter(**hits)
        # SQLite has no JSON containment; match the quoted element in the stored text.
        return queryset.filter(rule_ids__icontains=f'"{value}"')

    def filter_status(self, queryset, name, value):
        upto = self.request.parser_context["view"].checkpointed_upto() if self.request else 0
        if value == "checkpointed":
            return queryset.filter(id__lte=upto)
        if value == "pending_checkpoint":
            return queryset.filter(id__gt=upto)
        return queryset


RULE_KEY_FIELDS = {"time": "rule_hits__time", "id": "rule_hits__event_id"}


def by_rule_key(ordering: list[str]) -> list[str]:
    """An events ordering that starts with time (-time,-id), as the rule table's key of a
    rule search: the same order (a rule row has its event's time and id), read from the
    index of the rule's rows newest first and stopped after the page, whatever the time
    range (none: every month)."""
    if not ordering or ordering[0].lstrip("-") != "time":
        return ordering
    return [
        ("-" if field.startswith("-") else "") + RULE_KEY_FIELDS.get(field.lstrip("-"), field.lstrip("-"))
        for field in ordering
    ]


class EventOrdering(OrderingFilter):
    """?ordering=, by the rule table's key for a rule search on PostgreSQL (by_rule_key)."""

    def get_ordering(self, request, queryset, view):
        ordering = super().get_ordering(request, queryset, view)
        if connection.vendor == "postgresql" and request.query_params.get("rule"):
            return by_rule_key(ordering)
        return ordering


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
