"""The page a throttled login gets (django-axes' lockout response; the limits are in config/settings.py).

After LOGIN_FAILURE_LIMIT failed logins of one account from one address, django-axes refuses further
logins of it from there, even with the right password, until LOGIN_COOLOFF_MINUTES have passed since
the failure that locked it (tries while locked out do not count). The login page itself answers,
with status 429 and the wait, so a rater who mistyped knows what happened and when to come back; it
says nothing about whether the account exists (every name is counted alike).
"""

from __future__ import annotations

import logging
import math

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import render

log = logging.getLogger(__name__)


def cooloff_minutes() -> int:
    return max(1, math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60))


def lockout_message() -> str:
    minutes = cooloff_minutes()
    return (
        f"Too many failed logins to this account from your address. Try again in {minutes} "
        f"minute{'s' if minutes != 1 else ''}, or ask staff to unlock the account."
    )


def locked_out(request, response=None, credentials=None):
    """django-axes' AXES_LOCKOUT_CALLABLE: the login page again, with the lockout message, status 429."""
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    log.warning(
        "login throttled: account %r from %s", username[:150], getattr(request, "axes_ip_address", "?")
    )
    form = AuthenticationForm(request, initial={"username": username[:150]})
    context = {"form": form, "next": request.POST.get("next", ""), "lockout": lockout_message()}
    return render(request, "registration/login.html", context, status=429)
