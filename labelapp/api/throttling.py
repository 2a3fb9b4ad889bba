"""The API's rate limits, keyed on the client's address by the same rule as login throttling
(labelapp/login_throttle.py, client_address: TRUSTED_PROXY_COUNT proxies, the entry the outermost one
wrote, ports dropped, anything else counted at the connection). DRF's own rule (NUM_PROXIES) read the
client-written left-most entry of a short header and kept ports, so behind a proxy that writes
"ip:port" every connection was a fresh allowance."""

from __future__ import annotations

from rest_framework import throttling

from labelapp.login_throttle import client_address


class _ClientAddress:
    def get_ident(self, request):
        return client_address(request) or ""


class AnonRateThrottle(_ClientAddress, throttling.AnonRateThrottle):
    """Anonymous requests, per client address."""


class UserRateThrottle(_ClientAddress, throttling.UserRateThrottle):
    """Signed-in requests per user (the address only for an anonymous one, as DRF does)."""
