"""The events list's page: the matches are counted up to a cap, not all of them.

The console shows a count on every page; an exact count of an unfiltered search reads every
event (7.5 s at 75 M), so it stops at COUNT_CAP rows beyond the page: `count` is then the
cap and `count_is_capped` is true (the console shows "10,000+"), and `next` is given as
long as rows follow the page. A view may name what to count instead of the listed
queryset (`count_queryset(queryset)`: the rule search counts its rule table's rows), and
how to fetch a page (`page_of(queryset, offset, limit)`, None for the queryset's slice: the
rule search reads the page's keys from its rule table first).
"""

from __future__ import annotations

from rest_framework.response import Response

from controlplane.core.pagination import WardenPagination

COUNT_CAP = 10_000


class CappedCountPagination(WardenPagination):
    count_cap = COUNT_CAP

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.limit = self.get_limit(request)
        if self.limit is None:
            return None
        self.offset = self.get_offset(request)
        # Deep pages (past the cap) count as far as themselves, plus one to know if more follow.
        bound = max(self.count_cap, self.offset + self.limit)
        counting = getattr(view, "count_queryset", None)
        counted = (counting(queryset) if counting else queryset).order_by()[: bound + 1].count()
        self.count_is_capped = counted > bound
        self.count = min(counted, bound)
        if self.count == 0 or self.offset > self.count:
            return []
        paging = getattr(view, "page_of", None)
        page = paging(queryset, self.offset, self.limit) if paging is not None else None
        return list(queryset[self.offset : self.offset + self.limit]) if page is None else page

    def get_next_link(self):
        if self.count_is_capped:  # rows follow this page: the count stopped before them
            self.count, counted = self.offset + self.limit + 1, self.count
            try:
                return super().get_next_link()
            finally:
                self.count = counted
        return super().get_next_link()

    def get_paginated_response(self, data):
        return Response(
            {
                "count": self.count,
                "count_is_capped": self.count_is_capped,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        response = super().get_paginated_response_schema(schema)
        response["properties"] = {
            "count": {
                **response["properties"]["count"],
                "description": (
                    f"The matches, counted up to {COUNT_CAP:,} (or to the end of a page past that): "
                    "that bound when count_is_capped."
                ),
            },
            "count_is_capped": {
                "type": "boolean",
                "description": "More events match than `count` (the console shows 10,000+).",
            },
            **{k: v for k, v in response["properties"].items() if k != "count"},
        }
        response["required"] = [*response["required"], "count_is_capped"]
        return response
