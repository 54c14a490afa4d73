"""Filter fields shared by every list endpoint."""

from datetime import timezone

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField


class UTCIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 time normalised to UTC before it reaches SQL.

    PostgreSQL refuses UTC offsets beyond ±15:59, which ISO 8601 allows; a bad offset
    must be the caller's 400, not the database's 500.
    """

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(timezone.utc)
        except (OverflowError, ValueError) as exc:
            raise forms.ValidationError("the time is out of range", code="invalid") from exc


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCIsoDateTimeField
