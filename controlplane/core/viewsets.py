"""The base of Warden's API viewsets: what every domain's views did by hand (after NetBox's
BaseViewSet).

- `rendered(obj)`: a service returns the object it changed; the answer is rendered from a
  fresh read through the view's queryset, so it shows what a GET shows (prefetches and
  annotations included), not the service's in-memory copy.
- `parent_lookup`: for nested routes (/agents/<name>/keys/), an unknown parent is a 404,
  never an empty list or a create under nothing.
"""

from __future__ import annotations

from django.db import models
from django.shortcuts import get_object_or_404
from rest_framework import viewsets
from rest_framework.serializers import Serializer


class WardenViewSet(viewsets.GenericViewSet):
    # (parent model, URL keyword, parent field): e.g. (Agent, "agent_name", "name").
    parent_lookup: tuple[type[models.Model], str, str] | None = None

    def rendered(self, instance: models.Model, serializer_class: type[Serializer] | None = None) -> dict:
        serializer_class = serializer_class or self.get_serializer_class()
        return serializer_class(self.get_queryset().get(pk=instance.pk), context=self.get_serializer_context()).data

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # After authentication and permissions (an anonymous caller learns nothing), before
        # any action: an unknown parent is a 404 for list, create and detail alike.
        self.parent = self.get_parent() if self.parent_lookup is not None else None

    def get_parent(self) -> models.Model:
        assert self.parent_lookup is not None  # initial() calls this only for nested viewsets
        model, keyword, field = self.parent_lookup
        return get_object_or_404(model, **{field: self.kwargs[keyword]})
