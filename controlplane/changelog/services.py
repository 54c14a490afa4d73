"""Recording changes. Every write service calls record_change inside its transaction."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from controlplane.changelog.models import ObjectChange


def snapshot(instance: models.Model) -> dict[str, Any]:
    """The object's concrete fields as JSON-safe data, minus fields marked secret.

    A model lists fields that must never reach the log in `change_log_exclude`
    (a token's hash, a private key).
    """
    excluded = set(getattr(instance, "change_log_exclude", ()))
    data = {}
    for field in instance._meta.concrete_fields:
        if field.name in excluded:
            continue
        data[field.attname] = field.value_from_object(instance)
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def record_change(
    instance: models.Model,
    *,
    action: str,
    by,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    message: str = "",
) -> ObjectChange:
    """Append a change log entry for `instance`, attributed to user `by`."""
    return ObjectChange.objects.create(
        user=by if getattr(by, "pk", None) else None,
        user_name=getattr(by, "username", None) or "system",
        action=action,
        object_type=ContentType.objects.get_for_model(instance, for_concrete_model=True),
        object_id=str(instance.pk),
        object_repr=str(instance)[:200],
        message=message,
        prechange_data=before,
        postchange_data=after,
    )
