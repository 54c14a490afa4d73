import django_filters

from controlplane.compliance.models import (
    Attestation,
    AttestationKind,
    FrameworkChoice,
    GapReport,
    ReportStatus,
    ReportTrigger,
)
from controlplane.core.filters import UTCDateTimeFilter


class GapReportFilter(django_filters.FilterSet):
    framework = django_filters.ChoiceFilter(choices=FrameworkChoice.choices)
    environment = django_filters.CharFilter(field_name="environment__name")
    status = django_filters.ChoiceFilter(choices=ReportStatus.choices)
    trigger = django_filters.ChoiceFilter(choices=ReportTrigger.choices)
    created_after = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = GapReport
        fields = []


class AttestationFilter(django_filters.FilterSet):
    framework = django_filters.ChoiceFilter(choices=FrameworkChoice.choices)
    environment = django_filters.CharFilter(field_name="environment__name")
    control_id = django_filters.CharFilter()
    kind = django_filters.ChoiceFilter(choices=AttestationKind.choices)

    class Meta:
        model = Attestation
        fields = []
