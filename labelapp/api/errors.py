"""JSON error pages for /api/: a client (or schemathesis) never gets Django's HTML 404/500 there.

A path that matches no URL pattern (e.g. /api/prompts/abc/) is resolved before DRF runs, so DRF's
exception handler cannot answer it; these handlers do, for /api/ paths only. With DEBUG on, Django
answers an unmatched path with its HTML debug page before handler404 is asked, so the last URL pattern
under /api/ is `unmatched`, which answers the same JSON (and names the URL with the slash a client
left off, since CommonMiddleware's redirect no longer applies there).
"""

from __future__ import annotations

from django.http import JsonResponse
from django.urls import Resolver404, resolve
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt


def not_found(request, exception=None):
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


@csrf_exempt  # it only answers 404: a POST to a path that matches nothing must not get the CSRF page
def unmatched(request, rest: str = ""):
    """The catch-all last pattern under /api/."""
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not unmatched:
            return JsonResponse({"detail": f"Not found. Did you mean {request.path}/ ?"}, status=404)
    return JsonResponse({"detail": "Not found."}, status=404)


def server_error(request):
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Server error."}, status=500)
    return defaults.server_error(request)


def bad_request(request, exception=None):
    """Django's own 400s (too many form fields, a suspicious header) reach here, not DRF."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)
