from rest_framework.pagination import LimitOffsetPagination


class WardenPagination(LimitOffsetPagination):
    """`?limit=&offset=` on every list; a bounded limit keeps one request cheap."""

    default_limit = 50
    max_limit = 1000
