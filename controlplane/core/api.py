"""Small pieces every API view shares."""

from rest_framework.request import Request
from rest_framework.serializers import Serializer


def validated(serializer_class: type[Serializer], request: Request, **kwargs) -> dict:
    """The request body checked by `serializer_class`; a 400 naming each bad field otherwise."""
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
