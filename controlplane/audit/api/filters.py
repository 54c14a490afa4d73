import django_filters
from django.db import connection
from django.db.models import BooleanField, F, QuerySet
from django.db.models.expressions import RawSQL
from rest_framework.filters import OrderingFilter

from controlplane.audit import partitions
from controlplane.audit.models import AuditEvent, Batch, EventRule, QuarantinedRecord, QuarantineReason
from controlplane.core.filters import UTCDateTimeFilter
from controlplane.identity.models import Agent


class AuditEventFilter(django_filters.FilterSet):
    agent = django_filters.CharFilter(field_name="agent__name", method="filter_agent")
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

    def filter_agent(self, queryset, name, value):
        # The agent's id, looked up first (names are unique): compared to a constant, each
        # month's index is read newest first and the page stops after 50 events. Joined by
        # name, the planner loops over the agent table and sorts every match of the agent.
        agent = Agent.objects.filter(name=value).values_list("pk", flat=True).first()
        # No such agent: the join, which finds nothing at once (and still runs the count).
        return queryset.filter(agent__name=value) if agent is None else queryset.filter(agent_id=agent)

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
            queryset = queryset.filter(**hits)
            if self.form.cleaned_data.get("agent"):
                # An agent's events naming a rule: read that agent's events that name any
                # (the partial index audit_event_agent_rules, whose predicate this repeats) and
                # look each up in the rule table's key, instead of fetching the rule's matches
                # of every agent to refuse them (3.2 s p99 at 100 M events). Exact: an event
                # with a rule row names a rule.
                queryset = queryset.filter(NAMES_A_RULE)
            return queryset
        # SQLite has no JSON containment; match the quoted element in the stored text.
        return queryset.filter(rule_ids__icontains=f'"{value}"')

    def rule_rows_to_count(self) -> QuerySet[EventRule] | None:
        """The rule search's matches as rows of the rule table alone, when nothing but the
        rule, the time range and the status filter (PostgreSQL; a short rule id): the page's
        capped count then reads the rule's entries of its key and their narrow rows instead
        of fetching 10,001 events from disk (a common rule at 100 M events: p99 18.5 ms,
        671 ms before; docs/scale.md). Exact:
        a rule row is stored, and removed, with its event (migrations 0010, 0011). None
        otherwise: the events are counted."""
        if connection.vendor != "postgresql" or not self.is_valid():
            return None
        data = self.form.cleaned_data
        if any(value not in (None, "", []) for name, value in data.items() if name not in RULE_COUNT_FILTERS):
            return None
        key = partitions.rule_key(data.get("rule") or "")
        if not key or key.startswith(partitions.RULE_DIGEST_PREFIX):
            return None  # no rule, or a digest key, which rechecks the event's rule ids
        rows = EventRule.objects.filter(rule_id=key)
        if data.get("time_after"):
            rows = rows.filter(time__gte=data["time_after"])
        if data.get("time_before"):
            rows = rows.filter(time__lt=data["time_before"])
        if data.get("status") in ("checkpointed", "pending_checkpoint"):
            upto = self.request.parser_context["view"].checkpointed_upto() if self.request else 0
            rows = rows.filter(**{"event_id__lte" if data["status"] == "checkpointed" else "event_id__gt": upto})
        return rows

    def filter_status(self, queryset, name, value):
        upto = self.request.parser_context["view"].checkpointed_upto() if self.request else 0
        if value == "checkpointed":
            return queryset.filter(id__lte=upto)
        if value == "pending_checkpoint":
            return queryset.filter(id__gt=upto)
        return queryset


# partitions.NAMES_RULES, the predicate of the index audit_event_agent_rules, word for word
# (the planner uses a partial index only when the query implies its predicate).
NAMES_A_RULE = RawSQL(f"{AuditEvent._meta.db_table}.rule_ids <> '[]'::jsonb", [], output_field=BooleanField())
# The filters a count of the rule table's rows alone can answer (rule_rows_to_count).
RULE_COUNT_FILTERS = {"rule", "time_after", "time_before", "status"}
# An event's time and id as the rule search's join names them, and as a rule row names them.
RULE_KEY_FIELDS = {"time": "rule_hits__time", "id": "rule_hits__event_id"}
RULE_ROW_FIELDS = {"time": "time", "id": "event_id"}


def _renamed(ordering: list[str], names: dict[str, str]) -> list[str]:
    """`ordering` with each field named as in `names` (others as they are), signs kept."""
    return [("-" if field.startswith("-") else "") + names.get(field.lstrip("-"), field.lstrip("-"))
            for field in ordering]


def by_rule_key(ordering: list[str]) -> list[str]:
    """An events ordering that starts with time (-time,-id), as the rule table's key of a
    rule search: the same order (a rule row has its event's time and id), read from the
    index of the rule's rows newest first and stopped after the page, whatever the time
    range (none: every month)."""
    if not ordering or ordering[0].lstrip("-") != "time":
        return ordering
    return _renamed(ordering, RULE_KEY_FIELDS)


def rule_row_ordering(ordering: list[str]) -> list[str] | None:
    """The rule rows' ordering that lists their events in `ordering` (events fields), or None
    when it names a field a rule row does not have (a rule row has its event's time and id)."""
    if not ordering or any(field.lstrip("-") not in RULE_ROW_FIELDS for field in ordering):
        return None
    return _renamed(ordering, RULE_ROW_FIELDS)


class EventOrdering(OrderingFilter):
    """?ordering=, by the rule table's key for a rule search on PostgreSQL (by_rule_key)."""

    def requested(self, request, queryset, view) -> list[str]:
        """The ordering asked for (or the view's default), in events fields."""
        return list(super().get_ordering(request, queryset, view) or [])

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
