"""One place that turns domain and database errors into clear 4xx answers.

As NetBox maps ProtectedError to 409, we map our domain errors and integrity
races: the caller always learns which field to fix, never sees a 500 for bad input.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import Http404
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from controlplane.core.exceptions import ConflictError, InvalidInput, NotDelivered, PayloadTooLarge, UnsupportedEncoding


def warden_exception_handler(exc, context):
    if isinstance(exc, InvalidInput):
        body = {exc.field: [exc.message]}
        if exc.details:
            body["errors"] = exc.details
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, PayloadTooLarge):
        return Response({"detail": exc.message}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, UnsupportedEncoding):
        return Response({"detail": exc.message}, status=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE)
    if isinstance(exc, NotDelivered):
        body = {exc.field: [exc.message]} if exc.field else {"detail": exc.message}
        return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    if isinstance(exc, ConflictError):
        body = {exc.field: [exc.message]} if exc.field else {"detail": exc.message}
        return Response(body, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "message_dict"):
            return Response(exc.message_dict, status=status.HTTP_400_BAD_REQUEST)
        return Response({"non_field_errors": exc.messages}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, IntegrityError):
        # Two writers raced past validation; the row that won is already there.
        return Response(
            {"detail": "the object conflicts with one that already exists"},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, Http404):
        return Response({"detail": "not found"}, status=status.HTTP_404_NOT_FOUND)
    return exception_handler(exc, context)
