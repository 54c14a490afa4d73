import django_filters

from controlplane.core.filters import UTCDateTimeFilter
from controlplane.identity.models import Agent, AgentKey, AgentStatus, RiskTier


class AgentFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=AgentStatus.choices)
    risk_tier = django_filters.MultipleChoiceFilter(choices=RiskTier.choices)
    owner_email = django_filters.CharFilter(lookup_expr="iexact")
    team = django_filters.CharFilter(lookup_expr="iexact")
    scope = django_filters.CharFilter(method="filter_scope", help_text="Agents holding this exact scope.")
    environment = django_filters.CharFilter(method="filter_environment", help_text="Agents running in this environment.")
    created_after = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Agent
        fields = ["name"]

    # JSON list membership is filtered in Python-free SQL on PostgreSQL and SQLite alike
    # by matching the JSON-encoded element, which both store verbatim.
    def filter_scope(self, queryset, name, value):
        return queryset.filter(scopes__icontains=f'"{value}"')

    def filter_environment(self, queryset, name, value):
        return queryset.filter(environments__icontains=f'"{value}"')


class AgentKeyFilter(django_filters.FilterSet):
    active = django_filters.BooleanFilter(field_name="revoked_at", lookup_expr="isnull")

    class Meta:
        model = AgentKey
        fields = ["label"]
