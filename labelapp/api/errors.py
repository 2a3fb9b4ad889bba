"""JSON error pages for /api/: a client (or schemathesis) never gets Django's HTML 404/500 there.

A path that matches no URL pattern (e.g. /api/prompts/abc/) is resolved before DRF runs, so DRF's
exception handler cannot answer it; these handlers do, for /api/ paths only.
"""

from __future__ import annotations

from django.http import JsonResponse
from django.views import defaults


def not_found(request, exception=None):
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Server error."}, status=500)
    return defaults.server_error(request)


def bad_request(request, exception=None):
    """Django's own 400s (too many form fields, a suspicious header) reach here, not DRF."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)
