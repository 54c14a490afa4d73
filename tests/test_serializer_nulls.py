"""Every read-only API field that can hold null says so in the schema.

A field read through a nullable foreign key (`requested_by` of a request an agent filed, the
`built_by` of a bundle the system built) answers null; unless the serializer field allows
null, the OpenAPI schema types it as a plain string and every generated client breaks on the
first such object. This walks every ModelSerializer of every app's API, so a field added
later without `allow_null=True` fails here, not in a client.
"""

import importlib
import inspect
import pkgutil

from django.core.exceptions import FieldDoesNotExist
from rest_framework import serializers

import controlplane


def api_model_serializers():
    for app in pkgutil.iter_modules(controlplane.__path__):
        try:
            module = importlib.import_module(f"controlplane.{app.name}.api.serializers")
        except ModuleNotFoundError:
            continue
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and issubclass(cls, serializers.ModelSerializer):
                yield f"{module.__name__}.{name}", cls


def reads_through_a_nullable_column(model, source: str) -> bool:
    """Whether a dotted source passes a nullable concrete column (an FK or a plain field)."""
    for part in source.split("."):
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:  # a property or method: not a column
            return False
        if not field.concrete:
            return False
        if field.null:
            return True
        model = field.related_model
        if model is None:
            return False
    return False


def nullable_fields_typed_as_not_null():
    found = []
    for label, cls in api_model_serializers():
        for name, field in cls().fields.items():
            if not field.read_only or field.allow_null or field.source == "*":
                continue
            if isinstance(field, (serializers.SerializerMethodField, serializers.ListField, serializers.DictField)):
                continue
            if reads_through_a_nullable_column(cls.Meta.model, field.source):
                found.append(f"{label}.{name} ({field.source})")
    return found


def test_every_field_read_through_a_nullable_column_allows_null(db):
    assert nullable_fields_typed_as_not_null() == []


def test_the_walk_sees_a_field_that_would_answer_null(db):
    # The check above must be able to fail: a serializer like the ones it walks, without
    # allow_null on a nullable foreign key, is reported.
    from controlplane.approvals.models import ApprovalRequest

    class Careless(serializers.ModelSerializer):
        requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

        class Meta:
            model = ApprovalRequest
            fields = ["requested_by"]

    field = Careless().fields["requested_by"]
    assert not field.allow_null and reads_through_a_nullable_column(ApprovalRequest, field.source)
    assert not reads_through_a_nullable_column(ApprovalRequest, "tool")
