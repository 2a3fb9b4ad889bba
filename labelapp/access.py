"""Who may open a page: the one decorator for staff pages (the rater pages use login_required)."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest


def staff_required(view):
    """Logged-in staff only: anonymous users go to the login page, anyone else logged in gets 403 (not
    Django admin's login page, which a rater cannot pass and which says nothing about why)."""

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("Staff only.")
        return view(request, *args, **kwargs)

    return wrapped
