from rest_framework import viewsets

from controlplane.changelog.api.filters import ObjectChangeFilter
from controlplane.changelog.api.serializers import ObjectChangeSerializer
from controlplane.changelog.models import ObjectChange


class ObjectChangeViewSet(viewsets.ReadOnlyModelViewSet):
    """The change log: every mutation made through the control plane. Read-only for everyone."""

    queryset = ObjectChange.objects.select_related("object_type")
    serializer_class = ObjectChangeSerializer
    filterset_class = ObjectChangeFilter
    search_fields = ["object_repr", "object_id", "message"]
    ordering_fields = ["time"]
