"""Small pieces every API view shares."""

from datetime import UTC

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.serializers import Serializer


def validated(serializer_class: type[Serializer], request: Request, **kwargs) -> dict:
    """The request body checked by `serializer_class`; a 400 naming each bad field otherwise."""
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class UTCDateTimeField(serializers.DateTimeField):
    """A time normalised to UTC: PostgreSQL refuses offsets beyond ±15:59 that ISO 8601 allows."""

    def to_internal_value(self, value):
        parsed = super().to_internal_value(value)
        try:
            return parsed.astimezone(UTC)
        except (OverflowError, ValueError):
            self.fail("invalid", format="ISO 8601")
