"""Pagination with a ceiling: ?limit is clamped to MAX_LIMIT, an absurd ?offset is a 400.

Issue 8: ?limit=99999999999999999999 reached PostgreSQL as an out-of-range bigint (500), and with no
maximum ?limit=1000000 returned every row at once.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination

MAX_OFFSET = 2**31 - 1

# The two parameters as the schema lists them, for every paginated list.
PAGE_PARAMS = [
    OpenApiParameter("limit", int, description="Page size (at most 200; larger is clamped)."),
    OpenApiParameter("offset", int, description="Rows to skip."),
]


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 200

    def get_limit(self, request):
        raw = request.query_params.get(self.limit_query_param)
        if raw is None:
            return self.default_limit
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ValidationError({"limit": "Must be a whole number."}) from None
        if value <= 0:
            return self.default_limit
        return min(value, self.max_limit)

    def get_offset(self, request):
        raw = request.query_params.get(self.offset_query_param)
        if raw is None:
            return 0
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ValidationError({"offset": "Must be a whole number."}) from None
        if value < 0 or value > MAX_OFFSET:
            raise ValidationError({"offset": f"Must be between 0 and {MAX_OFFSET}."})
        return value


def page_response(view, request, queryset, serializer_cls, *, rows=None):
    """One page of `queryset` (`limit`, `offset`) as the list endpoints answer: count, next,
    previous and the results through `serializer_cls`. `rows`: what to make of the page's objects
    first (e.g. add the figures computed for them in one go)."""
    paginator = BoundedLimitOffsetPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    items = rows(page) if rows is not None else page
    return paginator.get_paginated_response(serializer_cls(items, many=True).data)
