"""Every account changes its own password at /accounts/password/ (raters had no way to)."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db


def test_a_rater_changes_their_password_and_stays_signed_in(make_user):
    client = Client()
    client.force_login(make_user("rater-pw", password="old-pass-for-tests-1"))
    home = client.get("/").content.decode()
    assert 'href="/accounts/password/"' in home
    page = client.get("/accounts/password/")
    assert page.status_code == 200 and "Change your password" in page.content.decode()
    wrong = client.post(
        "/accounts/password/",
        {"old_password": "nope", "new_password1": "Fresh-pass-2468", "new_password2": "Fresh-pass-2468"},
    )
    assert wrong.status_code == 200 and "incorrectly" in wrong.content.decode()
    weak = client.post(
        "/accounts/password/",
        {"old_password": "old-pass-for-tests-1", "new_password1": "123", "new_password2": "123"},
    )
    assert weak.status_code == 200 and "too short" in weak.content.decode()
    done = client.post(
        "/accounts/password/",
        {
            "old_password": "old-pass-for-tests-1",
            "new_password1": "Fresh-pass-2468",
            "new_password2": "Fresh-pass-2468",
        },
    )
    assert done.status_code == 302 and done["Location"] == "/accounts/password/done/"
    assert client.get("/").status_code == 200  # still signed in (the session's hash was updated)
    user = get_user_model().objects.get(username="rater-pw")
    assert user.check_password("Fresh-pass-2468") and not user.check_password("old-pass-for-tests-1")


def test_the_password_page_asks_a_visitor_to_sign_in():
    r = Client().get("/accounts/password/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")


def test_guessing_the_old_password_locks_as_failed_logins_do(make_user, settings):
    # Django's form checked it with check_password, which nothing counted: a hijacked session could
    # guess it without limit (30 wrong tries, then the right one changed the password)
    user = make_user("rater-guess", password="old-pass-for-tests-1")
    client = Client()
    client.force_login(user)
    new = {"new_password1": "Fresh-pass-2468", "new_password2": "Fresh-pass-2468"}
    for i in range(settings.AXES_FAILURE_LIMIT):
        r = client.post("/accounts/password/", {"old_password": f"guess-{i}", **new})
        assert r.status_code in (200, 429)
    right = client.post("/accounts/password/", {"old_password": "old-pass-for-tests-1", **new})
    assert right.status_code == 429 and "Too many failed logins" in right.content.decode()
    user.refresh_from_db()
    assert user.check_password("old-pass-for-tests-1")
    # and the login page of that account is locked from this address as well
    login = Client().post("/accounts/login/", {"username": "rater-guess", "password": "old-pass-for-tests-1"})
    assert login.status_code == 429


def test_the_right_old_password_starts_the_count_again_and_the_admin_uses_the_same_page(make_user):
    # nine wrong tries and the right one left nine failures (authenticate sends no user_logged_in),
    # so the next typo at the login locked the account; the admin's own password page was not throttled
    from axes.models import AccessAttempt

    user = make_user("rater-count", password="old-pass-for-tests-1", staff=True)
    client = Client()
    client.force_login(user)
    new = {"new_password1": "Fresh-pass-2468", "new_password2": "Fresh-pass-2468"}
    for i in range(9):
        client.post("/accounts/password/", {"old_password": f"guess-{i}", **new})
    assert (
        client.post("/accounts/password/", {"old_password": "old-pass-for-tests-1", **new}).status_code == 302
    )
    assert not AccessAttempt.objects.filter(username="rater-count", failures_since_start__gt=0).exists()
    typo = Client().post("/accounts/login/", {"username": "rater-count", "password": "typo"})
    assert typo.status_code == 200
    r = client.get("/admin/password_change/")
    assert r.status_code == 302 and r["Location"] == "/accounts/password/"
