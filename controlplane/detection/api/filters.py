import django_filters

from controlplane.core.filters import UTCDateTimeFilter
from controlplane.detection.models import Alert, AlertState, Detector, Incident, IncidentStatus, Severity


class AlertFilter(django_filters.FilterSet):
    agent = django_filters.CharFilter(field_name="agent__name")
    state = django_filters.MultipleChoiceFilter(choices=AlertState.choices)
    severity = django_filters.MultipleChoiceFilter(choices=Severity.choices)
    detector = django_filters.ChoiceFilter(choices=Detector.choices)
    raised_after = UTCDateTimeFilter(field_name="raised_at", lookup_expr="gte")
    raised_before = UTCDateTimeFilter(field_name="raised_at", lookup_expr="lt")

    class Meta:
        model = Alert
        fields = []


class IncidentFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=IncidentStatus.choices)
    severity = django_filters.MultipleChoiceFilter(choices=Severity.choices)
    owner = django_filters.CharFilter(field_name="owner__username")
    agent = django_filters.CharFilter(field_name="agents__name")

    class Meta:
        model = Incident
        fields = []
