"""Request sanity shared by every page and API endpoint, checked before any view runs.

PostgreSQL refuses NUL (U+0000) in text, so a `%00` in a query parameter that reaches a text filter
was a DataError (500) wherever it landed: the API's `?source=`, every admin list filter on a text
field. No query parameter of this app has a use for one, so such a request is a 400 with a message.
(Bodies are the views' business: a form error keeps what was typed, the API parser answers JSON.)

A statement that PostgreSQL cancels at DB_STATEMENT_TIMEOUT_MS (the web process's limit, see
config/gunicorn.py) is a 503 with a message: the request changed nothing (its transaction rolls
back) and may be tried again; it was a 500 with no word of why.
"""

from __future__ import annotations

import logging

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from psycopg.errors import QueryCanceled

NUL_IN_QUERY = "Query parameters must not contain NUL characters (%00)."
DB_TIMEOUT = "The database took too long to answer; nothing was changed. Please try again in a moment."
log = logging.getLogger(__name__)


def query_has_nul(request: HttpRequest) -> bool:
    """True when a query parameter's name or value holds U+0000."""
    raw = request.META.get("QUERY_STRING", "")
    if "%00" not in raw and "\x00" not in raw:
        return False  # the common case, without parsing the query string
    return any("\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists())


class RefuseNulInQueryMiddleware:
    """400 for a query string holding a NUL: JSON under /api/ (as labelapp/api/errors.py), text elsewhere."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if query_has_nul(request):
            return _answer(request, NUL_IN_QUERY, 400)
        return self.get_response(request)


def _answer(request: HttpRequest, message: str, status: int) -> HttpResponse:
    """JSON under /api/ (as labelapp/api/errors.py), plain text elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


class DatabaseTimeoutMiddleware:
    """503 for a request whose statement PostgreSQL cancelled (statement_timeout)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, OperationalError) and isinstance(exception.__cause__, QueryCanceled):
            log.warning("statement cancelled on %s %s: %s", request.method, request.path, exception)
            response = _answer(request, DB_TIMEOUT, 503)
            response["Retry-After"] = "5"
            return response
        return None
