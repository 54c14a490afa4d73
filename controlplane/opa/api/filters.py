import django_filters

from controlplane.core.filters import UTCDateTimeFilter
from controlplane.opa.models import DecisionLog, OPAInstance


class OPAInstanceFilter(django_filters.FilterSet):
    environment = django_filters.CharFilter(field_name="environment__name", help_text="Environment name, e.g. prod.")
    revision = django_filters.CharFilter(field_name="active_revision", help_text="Instances running this revision.")
    current = django_filters.BooleanFilter(
        field_name="is_current", help_text="true: runs the environment's active revision; false: runs another one."
    )
    stale = django_filters.BooleanFilter(field_name="is_stale", help_text="true: no status report for 5 minutes.")

    class Meta:
        model = OPAInstance
        fields = ["instance_id", "version"]


class DecisionLogFilter(django_filters.FilterSet):
    environment = django_filters.CharFilter(field_name="environment__name", help_text="Environment name, e.g. prod.")
    path = django_filters.CharFilter(method="filter_path", help_text="Decision path, e.g. warden/decision.")
    time_after = UTCDateTimeFilter(field_name="timestamp", lookup_expr="gte")
    time_before = UTCDateTimeFilter(field_name="timestamp", lookup_expr="lt")

    class Meta:
        model = DecisionLog
        fields = ["decision_id", "instance_id"]

    def filter_path(self, queryset, name, value):
        return queryset.filter(path=value.lstrip("/"))
