"""Pagination with a ceiling: ?limit is clamped to MAX_LIMIT, an absurd ?offset is a 400.

Issue 8: ?limit=99999999999999999999 reached PostgreSQL as an out-of-range bigint (500), and with no
maximum ?limit=1000000 returned every row at once.
"""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination

MAX_OFFSET = 2**31 - 1


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
