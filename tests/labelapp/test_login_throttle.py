"""Login throttling (django-axes, labelapp/login_throttle.py): failed logins of one account from one
address lock that account there for a while, on the rater login page and the admin's alike."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

PASSWORD = "pw-for-tests-123"


@pytest.fixture(autouse=True)
def three_tries(settings):
    settings.AXES_FAILURE_LIMIT = 3


def _login(username, password, *, address="127.0.0.1", url="/accounts/login/"):
    client = Client(REMOTE_ADDR=address)
    response = client.post(url, {"username": username, "password": password, "next": "/"})
    return response, "_auth_user_id" in client.session


def _fail(username, times, **kw):
    for _ in range(times):
        response, logged_in = _login(username, "wrong-password", **kw)
        assert not logged_in


def test_failed_logins_lock_the_account_for_that_address_with_the_wait_said(make_user):
    # password guessing was unlimited: 30 wrong passwords, then the right one logged in
    make_user("rater-a")
    make_user("rater-b")
    _fail("rater-a", 3)
    response, logged_in = _login("rater-a", PASSWORD)
    assert response.status_code == 429 and not logged_in
    page = response.content.decode()
    assert "Too many failed logins" in page and "15 minutes" in page and 'name="password"' in page
    assert _login("rater-b", PASSWORD)[1]  # another account from the same address
    assert _login("rater-a", PASSWORD, address="10.0.0.2")[1]  # the same account from elsewhere


def test_a_success_resets_the_count_and_a_lockout_ends_after_the_cooloff(make_user):
    from axes.models import AccessAttempt

    make_user("rater-a")
    _fail("rater-a", 2)
    assert _login("rater-a", PASSWORD)[1]
    _fail("rater-a", 2)  # counted from zero again: not locked
    assert _login("rater-a", PASSWORD)[1]
    _fail("rater-a", 3)
    assert _login("rater-a", PASSWORD)[0].status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert _login("rater-a", PASSWORD)[1]


def test_the_admin_login_is_throttled_too_and_name_variants_count_as_the_account(make_user):
    make_user("boss", staff=True)
    # NFKC turns the full-width name into "boss" before the password is checked (the login form's
    # normalization): it must count against the same account, not start a count of its own
    _fail("ｂｏｓｓ", 2, url="/admin/login/")
    _fail("boss", 1, url="/admin/login/")
    response, logged_in = _login("boss", PASSWORD, url="/admin/login/")
    assert response.status_code == 429 and not logged_in


def test_tries_while_locked_out_do_not_start_the_wait_again(make_user):
    # each failed post during the lockout set the wait back to its full length: one every 14 minutes
    # kept the account locked for ever
    from axes.models import AccessAttempt

    make_user("rater-a")
    _fail("rater-a", 3)
    locked_at = AccessAttempt.objects.get().attempt_time
    _fail("rater-a", 2)
    attempt = AccessAttempt.objects.get()
    assert (attempt.attempt_time, attempt.failures_since_start) == (locked_at, 3)


def _login_via_proxy(username, password, forwarded):
    # every request reaches the app from the proxy's address; the proxy appends the client's
    client = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    response = client.post("/accounts/login/", {"username": username, "password": password, "next": "/"})
    return response, "_auth_user_id" in client.session


def test_behind_a_proxy_each_client_is_counted_at_its_own_address(settings, make_user):
    # Every login had the proxy's address: one guesser who knew a name locked its owner out, wherever
    # the owner logged in from.
    settings.TRUSTED_PROXY_COUNT = 1
    make_user("rater-a")
    for _ in range(3):
        assert not _login_via_proxy("rater-a", "wrong", "203.0.113.7")[1]
    assert _login_via_proxy("rater-a", PASSWORD, "203.0.113.7")[0].status_code == 429
    assert _login_via_proxy("rater-a", PASSWORD, "198.51.100.4")[1]  # the owner, from elsewhere


@pytest.mark.parametrize("proxies", [0, 1])
def test_a_guesser_cannot_dodge_the_count_with_a_forwarded_header_of_its_own(settings, make_user, proxies):
    # what the client writes left of the proxy's entry (or, with no proxy, the whole header) is not read
    settings.TRUSTED_PROXY_COUNT = proxies
    make_user("rater-a")
    for i in range(3):
        assert not _login_via_proxy("rater-a", "wrong", f"192.0.2.{i}, 203.0.113.7")[1]
    assert _login_via_proxy("rater-a", PASSWORD, "192.0.2.99, 203.0.113.7")[0].status_code == 429


def test_a_forwarded_entry_that_is_not_an_address_counts_at_the_connection(settings, make_user):
    from axes.models import AccessAttempt

    settings.TRUSTED_PROXY_COUNT = 2
    make_user("rater-a")
    for forwarded in ("not-an-address, 10.9.9.9", "203.0.113.7", ""):  # bad; shorter than the chain; none
        response, logged_in = _login_via_proxy("rater-a", "wrong", forwarded)
        assert response.status_code in (200, 429) and not logged_in  # the third locks
    attempt = AccessAttempt.objects.get()  # one count, at the proxy's address
    assert (attempt.ip_address, attempt.failures_since_start) == ("10.0.0.1", 3)


@pytest.mark.parametrize(
    ("entry", "counted_at"),
    [
        ("203.0.113.7:51234", "203.0.113.7"),
        ("[2001:db8::1]:443", "2001:db8::"),  # IPv6: its /64
        ("2001:db8::2", "2001:db8::"),
        (" 198.51.100.4 ", "198.51.100.4"),
    ],
)
def test_a_forwarded_address_with_a_port_counts_at_the_address(settings, make_user, entry, counted_at):
    # read as no address, every client behind the proxy was counted at the proxy's again
    from axes.models import AccessAttempt

    settings.TRUSTED_PROXY_COUNT = 1
    make_user("rater-a")
    _login_via_proxy("rater-a", "wrong", f"192.0.2.1, {entry}")
    assert AccessAttempt.objects.get().ip_address == counted_at


def test_one_address_failing_on_many_accounts_is_refused_everywhere_for_the_window(settings, make_user):
    # password spraying: one guess on each of many accounts never reached any account's limit, so an
    # address could try a common password on every account without being slowed down
    from axes.models import AccessAttempt

    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 5
    make_user("rater-x")
    for n in range(5):
        _fail(f"someone-{n}", 1)
    response, logged_in = _login("rater-x", PASSWORD)  # the right password of an account never tried
    assert response.status_code == 429 and not logged_in
    page = response.content.decode()
    assert "Too many failed logins from your address" in page and "this account" not in page
    assert _login("rater-x", PASSWORD, address="10.0.0.2")[1]  # another address is not held
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert _login("rater-x", PASSWORD)[1]  # the window ended


def test_an_ipv6_client_is_counted_per_64_network(settings, make_user):
    from axes.models import AccessAttempt

    # counted per address, a guesser holding a /64 (one subscriber's) rotated through its 2^64 addresses,
    # each with a fresh count for every account and for the address limit
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 5
    make_user("rater-x")
    for n in range(5):
        _fail(f"someone-{n}", 1, address=f"2001:db8:1:2::{n + 1:x}")
    response, logged_in = _login("rater-x", PASSWORD, address="2001:db8:1:2:ffff::9")
    assert response.status_code == 429 and not logged_in
    assert _login("rater-x", PASSWORD, address="2001:db8:1:3::1")[1]  # another /64 is not held
    _fail("someone-else", 1, address="::ffff:192.0.2.9")  # IPv4-mapped: counted at the IPv4 address
    assert AccessAttempt.objects.filter(ip_address="192.0.2.9").exists()


def test_the_address_limit_can_be_switched_off(settings, make_user):
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 0
    make_user("rater-x")
    for n in range(8):
        _fail(f"someone-{n}", 2)
    assert _login("rater-x", PASSWORD)[1]
