import django_filters

from controlplane.changelog.models import ChangeAction, ObjectChange
from controlplane.core.filters import UTCDateTimeFilter


class ObjectChangeFilter(django_filters.FilterSet):
    object_type = django_filters.CharFilter(method="filter_object_type", help_text="app_label.model, e.g. identity.agent")
    action = django_filters.MultipleChoiceFilter(choices=ChangeAction.choices)
    user = django_filters.CharFilter(field_name="user_name")
    time_after = UTCDateTimeFilter(field_name="time", lookup_expr="gte")
    time_before = UTCDateTimeFilter(field_name="time", lookup_expr="lt")

    class Meta:
        model = ObjectChange
        fields = ["object_id"]

    def filter_object_type(self, queryset, name, value):
        app_label, _, model = value.partition(".")
        return queryset.filter(object_type__app_label=app_label, object_type__model=model)
