"""The page a throttled login gets (django-axes' lockout response; the limits are in config/settings.py).

After LOGIN_FAILURE_LIMIT failed logins of one account from one address, django-axes refuses further
logins of it from there, even with the right password, until LOGIN_COOLOFF_MINUTES have passed since
the failure that locked it (tries while locked out do not count). The login page itself answers,
with status 429 and the wait, so a rater who mistyped knows what happened and when to come back; it
says nothing about whether the account exists (every name is counted alike). The password page's
old-password check counts as a login too (ThrottledPasswordChangeForm).

One address is also held to LOGIN_ADDRESS_FAILURE_LIMIT failed logins over all accounts together in the
same window (AddressBudgetHandler): without it a guesser could try one common password on every
account (password spraying) and never lock anything, each account seeing a single failure.
"""

from __future__ import annotations

import ipaddress
import logging
import math

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm
from django.contrib.auth.views import PasswordChangeView
from django.core.exceptions import ValidationError
from django.db.models import Sum
from django.shortcuts import render
from django.urls import reverse

log = logging.getLogger(__name__)


def client_address(request) -> str | None:
    """django-axes' AXES_CLIENT_IP_CALLABLE: the address a login is counted against.

    With TRUSTED_PROXY_COUNT = 0 (no proxy) the connection's; behind N proxies, each of which appends
    the address it saw to X-Forwarded-For, the N-th entry from the right, the one the outermost proxy
    wrote. Entries left of it are whatever the client sent, so they are never read: a guesser cannot
    rotate them to dodge the count, nor name someone else's address to lock them out. The API's rate
    limits use this rule too (labelapp/api/throttling.py). django-ipware, which django-axes offers
    for this, returns no address at all when the header holds more or fewer entries than it expects,
    i.e. whenever a client sends one of its own. A header shorter than the chain (a request that
    bypassed a proxy) or an entry that is not an address falls back to the connection's. IPv6
    clients are counted per /64 network (`_counted_as`).
    """
    remote = request.META.get("REMOTE_ADDR")
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    if not proxies or len(forwarded) < proxies:
        return _counted_as(remote)
    candidate = _without_port(forwarded[-proxies].strip())
    try:
        return _counted_as(str(ipaddress.ip_address(candidate)))
    except ValueError:  # stored in an inet column: a bad value was a database error on every login
        return _counted_as(remote)


def _counted_as(address: str | None) -> str | None:
    """The address a client is counted at: an IPv6 address's /64 network (one subscriber's: counted per
    address, a guesser with a /64 had 2^64 fresh addresses to rotate through, each with its own
    limits), an IPv4-mapped one as the IPv4 address, any other as it is."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False).network_address)
    return str(ip)


def _without_port(entry: str) -> str:
    """An address as some proxies write it, with its port ("203.0.113.7:51234", "[2001:db8::1]:443"),
    without: read as no address, every client counted at the proxy's again."""
    if entry.startswith("[") and "]" in entry:
        return entry[1 : entry.index("]")]
    host, colon, port = entry.rpartition(":")
    return host if colon and host.count(":") == 0 and port.isdigit() else entry


class AddressBudgetHandler(AxesDatabaseHandler):
    """django-axes' AXES_HANDLER: its database handler, and besides each account's count at an address,
    the address's count over every account."""

    def is_locked(self, request, credentials=None) -> bool:
        return super().is_locked(request, credentials) or address_budget_spent(request)


def address_budget_spent(request) -> bool:
    """Whether the request's address has had LOGIN_ADDRESS_FAILURE_LIMIT failed logins, over all accounts,
    within the cool-off window (0 switches the limit off)."""
    limit = settings.LOGIN_ADDRESS_FAILURE_LIMIT
    address = getattr(request, "axes_ip_address", None)
    if not limit or address is None:
        return False
    recent = AccessAttempt.objects.filter(
        ip_address=address, attempt_time__gte=get_cool_off_threshold(request)
    ).aggregate(failures=Sum("failures_since_start"))
    return (recent["failures"] or 0) >= limit


def cooloff_minutes() -> int:
    return max(1, math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60))


def lockout_message(*, whole_address: bool = False) -> str:
    minutes = cooloff_minutes()
    wait = f"Try again in {minutes} minute{'s' if minutes != 1 else ''}"
    if whole_address:
        return f"Too many failed logins from your address. {wait}, or ask staff to unlock it."
    return (
        f"Too many failed logins to this account from your address. {wait}, or ask staff to unlock the "
        "account."
    )


def locked_out(request, response=None, credentials=None):
    """django-axes' AXES_LOCKOUT_CALLABLE: the login page again, with the lockout message, status 429
    (the password page when its old-password check was throttled)."""
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    log.warning(
        "login throttled: account %r from %s", username[:150], getattr(request, "axes_ip_address", "?")
    )
    if request.path == reverse("password_change") and request.user.is_authenticated:
        context = {
            "form": ThrottledPasswordChangeForm(request.user, request=request),
            "lockout": lockout_message(whole_address=address_budget_spent(request)),
        }
        return render(request, "registration/password_change_form.html", context, status=429)
    form = AuthenticationForm(request, initial={"username": username[:150]})
    message = lockout_message(whole_address=address_budget_spent(request))
    context = {"form": form, "next": request.POST.get("next", ""), "lockout": message}
    return render(request, "registration/login.html", context, status=429)


class ThrottledPasswordChangeForm(PasswordChangeForm):
    """The password page's form, whose old password is checked through `authenticate`, so django-axes
    counts a wrong one as a failed login of the account from that address and locks as the login page
    does: Django's form calls check_password, which nothing counted, so a hijacked session could guess
    the old password without limit and take the account over."""

    def __init__(self, user, *args, request=None, **kwargs):
        self.request = request
        super().__init__(user, *args, **kwargs)

    def clean_old_password(self):
        old = self.cleaned_data["old_password"]
        user = authenticate(self.request, username=self.user.get_username(), password=old)
        if user is None:
            raise ValidationError(self.error_messages["password_incorrect"], code="password_incorrect")
        # right: the count starts again, as after a login (authenticate sends no user_logged_in, so
        # nine wrong tries and the right one left nine, and the next typo at login locked the account)
        AxesProxyHandler.user_logged_in(sender=type(self), request=self.request, user=user)
        return old


class ThrottledPasswordChangeView(PasswordChangeView):
    form_class = ThrottledPasswordChangeForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}
