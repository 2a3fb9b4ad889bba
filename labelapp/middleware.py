"""Request sanity shared by every page and API endpoint, checked before any view runs.

PostgreSQL refuses NUL (U+0000) in text, so a `%00` in a query parameter that reaches a text filter
was a DataError (500) wherever it landed: the API's `?source=`, every admin list filter on a text
field. No query parameter of this app has a use for one, so such a request is a 400 with a message.
(Bodies are the views' business: a form error keeps what was typed, the API parser answers JSON.)
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

NUL_IN_QUERY = "Query parameters must not contain NUL characters (%00)."


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
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": NUL_IN_QUERY}, status=400)
            return HttpResponseBadRequest(NUL_IN_QUERY, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
