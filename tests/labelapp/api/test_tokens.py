"""Tokens for programs: staff create and revoke them, only a hash is stored, revoked ones fail."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from labelapp.models import ApiToken

pytestmark = pytest.mark.django_db


def test_staff_create_a_token_that_is_stored_hashed_and_works(staff_api, rater, client):
    r = staff_api.post("/api/tokens/", {"username": "rater", "name": "feed"}, content_type="application/json")
    assert r.status_code == 201
    assert "no-store" in r["Cache-Control"]  # the key is in this answer only: nothing may cache it
    key = r.json()["key"]
    row = ApiToken.objects.get()
    assert key not in (row.digest, row.prefix) and row.digest == hashlib.sha256(key.encode()).hexdigest()
    assert "key" not in staff_api.get("/api/tokens/").json()["results"][0]
    me = client.get("/api/ratings/", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert me.status_code == 200


def test_a_revoked_token_is_refused(staff_api, staff, client):
    key = staff_api.post(
        "/api/tokens/", {"username": "staff", "name": "x"}, content_type="application/json"
    ).json()
    assert client.get("/api/tokens/", HTTP_AUTHORIZATION=f"Bearer {key['key']}").status_code == 200
    assert staff_api.post(f"/api/tokens/{key['id']}/revoke/").status_code == 200
    r = client.get("/api/tokens/", HTTP_AUTHORIZATION=f"Bearer {key['key']}")
    assert r.status_code == 401


@pytest.mark.parametrize("header", ["Bearer rlhf_nope_nope", "Bearer", "Token a b", "Bearer \u00e9"])
def test_bad_tokens_get_401(client, header):
    assert client.get("/api/ratings/", HTTP_AUTHORIZATION=header).status_code == 401


def test_anonymous_requests_get_401(client):
    assert client.get("/api/ratings/").status_code == 401


def test_raters_cannot_create_tokens(api, rater_key, client):
    assert api.post("/api/tokens/", {"username": "rater", "name": "x"}).status_code == 403
    assert client.get("/api/tokens/", HTTP_AUTHORIZATION=f"Bearer {rater_key}").status_code == 403


def test_it_throttles_per_user(client, rater_key, settings):
    from rest_framework.throttling import UserRateThrottle

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK}
    old = UserRateThrottle.THROTTLE_RATES
    UserRateThrottle.THROTTLE_RATES = {**old, "user": "3/min"}
    try:
        codes = [
            client.get("/api/ratings/", HTTP_AUTHORIZATION=f"Bearer {rater_key}").status_code
            for _ in range(5)
        ]
    finally:
        UserRateThrottle.THROTTLE_RATES = old
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]


# --- scopes and expiry -----------------------------------------------------------------------------------


def _key(user, scopes, **kw):
    from labelapp.services.tokens import token_create

    return {"HTTP_AUTHORIZATION": f"Bearer {token_create(user=user, name='scoped', scopes=scopes, **kw)[1]}"}


def test_a_read_token_reads_but_cannot_write_export_or_manage_tokens(staff, client):
    read = _key(staff, ["read"])
    assert client.get("/api/queue/", **read).status_code == 200
    # every prompt text, withheld and non-consented ones too, is bulk data: not "reading"
    assert client.get("/api/prompts/", **read).status_code == 403
    assert client.get("/api/prompts/1/", **read).status_code == 403
    assert client.get("/api/prompts/", **_key(staff, ["ingest"])).status_code == 200
    r = client.post(
        "/api/prompts/",
        {"text": "q", "source": "t", "consent": True},
        content_type="application/json",
        **read,
    )
    assert (
        r.status_code == 403
        and "'ingest' scope" in r.json()["detail"]
        and "it has: read" in r.json()["detail"]
    )
    assert client.get("/api/export/?format=jsonl", **read).status_code == 403  # bulk data is not "reading"
    assert client.get("/api/staff/ratings/", **read).status_code == 403
    assert client.get("/api/tokens/", **read).status_code == 403
    assert (
        client.post(
            "/api/policy-rounds/", {"kind": "ppo"}, content_type="application/json", **read
        ).status_code
        == 403
    )


def test_an_ingest_token_ingests_and_nothing_else(staff, client):
    ingest = _key(staff, ["ingest"])
    r = client.post(
        "/api/prompts/",
        {"text": "q?", "source": "t", "consent": True},
        content_type="application/json",
        **ingest,
    )
    assert r.status_code == 201
    assert client.get("/api/prompts/", **ingest).status_code == 200  # its own view, read as well
    assert client.get("/api/queue/", **ingest).status_code == 403  # no `read`
    assert (
        client.post(
            "/api/tokens/",
            {"username": "staff", "name": "escalate"},
            content_type="application/json",
            **ingest,
        ).status_code
        == 403
    )


def test_scopes_never_widen_what_the_account_may_do(rater, guideline, client):
    everything = _key(rater, None)
    assert client.get("/api/ratings/", **everything).status_code == 200
    assert client.get("/api/tokens/", **everything).status_code == 403  # a rater stays a rater
    rate_only = _key(rater, ["rate"])
    assert client.get("/api/guidelines/current/", **rate_only).status_code == 200
    assert client.get("/api/ratings/", **rate_only).status_code == 200


@pytest.mark.parametrize(
    "body, message",
    [
        ({"scopes": ["read", "sudo"]}, "Unknown scope(s): sudo"),
        ({"scopes": []}, "at least one scope"),
        ({"scopes": "read"}, "list"),
        ({"expires_in_days": 0}, "greater than or equal to 1"),
        ({"expires_in_days": 10**40}, "less than or equal to"),
    ],
)
def test_bad_scopes_or_expiry_are_a_400_with_the_reason(staff_api, body, message):
    r = staff_api.post(
        "/api/tokens/", {"username": "staff", "name": "x", **body}, content_type="application/json"
    )
    assert r.status_code == 400 and message in str(r.json()), r.json()
    assert not ApiToken.objects.exists()


def test_a_token_with_scopes_and_expiry_is_listed_and_refused_once_expired(staff_api, staff, client):
    from datetime import timedelta

    from django.utils import timezone

    r = staff_api.post(
        "/api/tokens/",
        {"username": "staff", "name": "nightly export", "scopes": ["export", "read"], "expires_in_days": 7},
        content_type="application/json",
    )
    assert r.status_code == 201 and r.json()["scopes"] == ["read", "export"]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {r.json()['key']}"}
    assert client.get("/api/queue/", **auth).status_code == 200
    ApiToken.objects.filter(pk=r.json()["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get("/api/queue/", **auth).status_code == 401


def test_the_command_takes_scopes_and_refuses_unknown_ones(staff):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command(
        "create_api_token", "staff", "--name", "feed", "--scope", "ingest", "--expires-days", "30", stdout=out
    )
    assert "scopes: ingest" in out.getvalue() and "expires" in out.getvalue()
    assert ApiToken.objects.get().scopes == ["ingest"]
    with pytest.raises(CommandError, match="Unknown scope"):
        call_command("create_api_token", "staff", "--name", "x", "--scope", "root")


def test_every_api_view_names_a_known_scope_and_checks_it():
    """A view added later without `token_scope` would fall back to `admin`; this says so at once."""
    from django.urls import URLPattern, URLResolver, get_resolver

    from labelapp.api.permissions import TokenScope
    from labelapp.models import TOKEN_SCOPES

    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                yield prefix + str(p.pattern), p.callback

    checked = 0
    for route, callback in walk(get_resolver().url_patterns):
        view = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
        if not route.startswith("api/") or view is None or route.startswith(("api/schema", "api/docs")):
            continue
        assert getattr(view, "token_scope", None) in TOKEN_SCOPES, route
        assert any(isinstance(perm, TokenScope) for perm in view().get_permissions()), route
        checked += 1
    assert checked >= 20


def test_a_read_token_cannot_claim_an_assignment(rater, guideline, client, make_comparison):
    from labelapp.models import Assignment
    from labelapp.services.guidelines import guideline_acknowledge, guideline_current

    guideline_acknowledge(rater=rater, version=guideline_current())
    make_comparison()
    r = client.get("/api/assignments/next/", **_key(rater, ["read"]))
    assert r.status_code == 403 and "'rate' scope" in r.json()["detail"]
    assert not Assignment.objects.exists()
    assert client.get("/api/assignments/next/", **_key(rater, ["rate"])).status_code == 200


def test_a_token_mints_nothing_wider_or_longer_lived_than_itself(staff, client):
    from labelapp.services.tokens import token_create

    admin_only = _key(staff, ["admin", "read"], expires_in_days=3)
    parent = ApiToken.objects.get()
    body = {"username": "staff", "name": "child"}
    r = client.post("/api/tokens/", body, content_type="application/json", **admin_only)
    assert r.status_code == 201 and r.json()["scopes"] == ["read", "admin"]  # its own, not all
    child = ApiToken.objects.get(pk=r.json()["id"])
    assert child.expires_at == parent.expires_at  # inherits the expiry
    wider = client.post(
        "/api/tokens/", body | {"scopes": ["export"]}, content_type="application/json", **admin_only
    )
    assert (
        wider.status_code == 400
        and "cannot grant scope(s) it does not hold: export" in wider.json()["detail"]
    )
    longer = client.post(
        "/api/tokens/", body | {"expires_in_days": 30}, content_type="application/json", **admin_only
    )
    assert longer.status_code == 400 and "cannot outlive it" in longer.json()["detail"]
    assert ApiToken.objects.count() == 2
    assert token_create(user=staff, name="by hand", via=None)[0].scopes == list(ApiToken().scopes)  # all


def test_only_a_superuser_creates_tokens_for_a_superuser(staff_api, django_user_model):
    django_user_model.objects.create_superuser("root", "root@example.org", "pw")
    r = staff_api.post("/api/tokens/", {"username": "root", "name": "x"}, content_type="application/json")
    assert r.status_code == 400 and "superuser" in r.json()["detail"]
    assert not ApiToken.objects.exists()


def test_the_command_refuses_a_nul_in_the_name(staff):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="NUL character"):
        call_command("create_api_token", "staff", "--name", "a\x00b")


# --- what a token mints dies with it; it mints only for its own account or non-staff -----------------


def _mint(client, auth, username, **body):
    r = client.post(
        "/api/tokens/",
        {"username": username, "name": "minted", **body},
        content_type="application/json",
        **auth,
    )
    assert r.status_code == 201, r.json()
    return r.json(), {"HTTP_AUTHORIZATION": f"Bearer {r.json()['key']}"}


def test_revoking_a_token_revokes_what_it_minted_transitively(staff_api, staff, rater, client):
    root = _key(staff, ["admin", "read", "rate"])
    child, child_auth = _mint(client, root, "staff")
    grandchild, grandchild_auth = _mint(client, child_auth, "staff")
    for_rater, for_rater_auth = _mint(client, grandchild_auth, "rater", scopes=["rate"])
    assert client.get("/api/ratings/", **for_rater_auth).status_code == 200
    bystander = _key(staff, ["read"])

    assert staff_api.post(f"/api/tokens/{child['id']}/revoke/").status_code == 200

    assert client.get("/api/tokens/", **root).status_code == 200  # its parent is untouched
    assert client.get("/api/tokens/", **child_auth).status_code == 401
    assert client.get("/api/tokens/", **grandchild_auth).status_code == 401
    assert client.get("/api/ratings/", **for_rater_auth).status_code == 401
    assert client.get("/api/queue/", **bystander).status_code == 200
    revoked = ApiToken.objects.filter(revoked_at__isnull=False)
    assert set(revoked.values_list("pk", flat=True)) == {child["id"], grandchild["id"], for_rater["id"]}
    assert ApiToken.objects.get(pk=grandchild["id"]).parent_id == child["id"]


def test_a_token_whose_minting_chain_holds_a_revoked_token_is_refused(staff, client):
    """Rows revoked some other way (a direct update, an old migration) still cut off what they minted."""
    from django.utils import timezone

    root = _key(staff, ["admin", "read"])
    child, child_auth = _mint(client, root, "staff")
    _, grandchild_auth = _mint(client, child_auth, "staff")
    ApiToken.objects.filter(pk=child["id"]).update(revoked_at=timezone.now())
    assert client.get("/api/queue/", **grandchild_auth).status_code == 401
    assert ApiToken.objects.filter(revoked_at__isnull=True).count() == 2  # not revoked, still refused
    assert client.get("/api/queue/", **root).status_code == 200


def test_revoking_in_the_admin_revokes_what_the_token_minted(staff, client, django_user_model):
    admin_user = django_user_model.objects.create_superuser("boss", "boss@example.org", "pw")
    root = _key(staff, ["admin", "read"])
    parent = ApiToken.objects.get()
    _, child_auth = _mint(client, root, "staff")
    browser = Client()
    browser.force_login(admin_user)
    r = browser.post(
        "/admin/labelapp/apitoken/", {"action": "revoke", "_selected_action": [parent.pk]}, follow=True
    )
    assert r.status_code == 200
    assert client.get("/api/queue/", **child_auth).status_code == 401
    assert not ApiToken.objects.filter(revoked_at__isnull=True).exists()


def test_a_token_mints_for_its_own_account_or_a_rater_not_for_other_staff(staff, rater, make_user, client):
    make_user("colleague", staff=True)
    admin_token = _key(staff, ["admin", "read", "rate"])
    r = client.post(
        "/api/tokens/", {"username": "colleague", "name": "x"}, content_type="application/json", **admin_token
    )
    assert r.status_code == 400 and "another staff account" in r.json()["detail"], r.json()
    assert ApiToken.objects.count() == 1
    _mint(client, admin_token, "staff")  # its own account
    _mint(client, admin_token, "rater", scopes=["rate"])  # a rater (e.g. a simulated one)


def test_only_a_signed_in_superuser_creates_tokens_for_other_staff(staff_api, make_user):
    """A token acts with its account's roles: a staff member minting one for a colleague would hold
    the colleague's permissions (services/roles.py)."""
    from django.test import Client

    make_user("colleague", staff=True)
    body = {"username": "colleague", "name": "x"}
    r = staff_api.post("/api/tokens/", body, content_type="application/json")
    assert r.status_code == 400 and "another staff account" in r.json()["detail"]
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("root", password="pw-for-tests-123"))
    r = admin.post("/api/tokens/", body, content_type="application/json")
    assert r.status_code == 201 and r.json()["username"] == "colleague"


def test_the_service_refuses_a_token_minting_for_other_staff(staff, rater, make_user):
    from labelapp.services.tokens import TokenError, token_create, token_revoke

    colleague = make_user("colleague", staff=True)
    via, _ = token_create(user=staff, name="admin", scopes=["admin", "rate"])
    with pytest.raises(TokenError, match="another staff account"):
        token_create(user=colleague, name="x", created_by=staff, via=via)
    own, _ = token_create(user=staff, name="own", created_by=staff, via=via)
    for_rater, _ = token_create(user=rater, name="sim", created_by=staff, scopes=["rate"], via=own)
    assert (own.parent, for_rater.parent) == (via, own)
    root = get_user_model().objects.create_superuser("root", password="pw-for-tests-123")
    assert token_create(user=colleague, name="by a person", created_by=root)[0].parent is None
    token_revoke(token=via)
    assert ApiToken.objects.filter(revoked_at__isnull=True).count() == 1  # the one a person made


def test_what_a_token_minted_stops_when_the_minting_account_is_deactivated_or_the_token_deleted(
    staff, rater, client
):
    root = _key(staff, ["admin", "rate"])
    _, for_rater = _mint(client, root, "rater", scopes=["rate"])
    staff.is_active = False
    staff.save(update_fields=["is_active"])
    assert client.get("/api/ratings/", **for_rater).status_code == 401
    staff.is_active = True
    staff.save(update_fields=["is_active"])
    assert client.get("/api/ratings/", **for_rater).status_code == 200
    ApiToken.objects.filter(user=staff).delete()  # deleting a token deletes what it minted
    assert not ApiToken.objects.exists()
    assert client.get("/api/ratings/", **for_rater).status_code == 401


def test_a_token_revokes_tokens_of_its_own_account_or_a_raters_not_other_staffs(
    staff, rater, make_user, client, django_user_model
):
    # Minting was limited to the token's own account or raters, revoking was not: an admin-scope token
    # could revoke every token of every staff member and superuser.
    colleague = make_user("colleague", staff=True)
    root = django_user_model.objects.create_superuser("root", "root@example.org", "pw")
    admin_token = _key(staff, ["admin", "read", "rate"])
    theirs = _key(colleague, ["read"])
    roots = _key(root, ["read"])
    own = ApiToken.objects.create(user=staff, name="own", prefix="ab12cd34", digest="0" * 64)
    raters = ApiToken.objects.create(user=rater, name="rater", prefix="ef56ab78", digest="1" * 64)
    for other in (ApiToken.objects.get(user=colleague), ApiToken.objects.get(user=root)):
        r = client.post(f"/api/tokens/{other.pk}/revoke/", **admin_token)
        assert r.status_code == 403 and "revoke" in r.json()["detail"], r.json()
    assert client.get("/api/queue/", **theirs).status_code == 200
    assert client.get("/api/queue/", **roots).status_code == 200
    for mine in (own, raters):
        assert client.post(f"/api/tokens/{mine.pk}/revoke/", **admin_token).status_code == 200
    # signed in (no token), staff revoke a colleague's token, not a superuser's
    browser = Client()
    browser.force_login(staff)
    r = browser.post(f"/api/tokens/{ApiToken.objects.get(user=root).pk}/revoke/")
    assert r.status_code == 403 and "superuser" in r.json()["detail"]
    assert browser.post(f"/api/tokens/{ApiToken.objects.get(user=colleague).pk}/revoke/").status_code == 200


def test_a_token_stops_when_its_account_is_promoted_or_demoted(staff, rater, client):
    # a rater's token (made by a data-manager, every scope by default) read every rating the day the
    # rater was made staff; a demoted staff member's rater-level token went on working
    from labelapp.services.tokens import token_create

    _, for_rater = token_create(user=rater, name="feed", created_by=staff)
    _, own = token_create(user=staff, name="own", created_by=staff, scopes=["admin", "rate", "read"])
    auth = {"HTTP_AUTHORIZATION": f"Bearer {for_rater}"}
    assert client.get("/api/ratings/", **auth).status_code == 200
    _, minted = _mint(client, {"HTTP_AUTHORIZATION": f"Bearer {own}"}, "rater", scopes=["rate"])
    rater.is_staff = True
    rater.save(update_fields=["is_staff"])
    assert client.get("/api/staff/ratings/", **auth).status_code == 401
    assert client.get("/api/ratings/", **auth).status_code == 401
    rater.is_staff = False  # back as it was: the token stays stopped (it came back to life before)
    rater.save(update_fields=["is_staff"])
    assert client.get("/api/ratings/", **auth).status_code == 401
    assert ApiToken.objects.get(name="feed").revoked_at is not None
    staff.is_staff = False
    staff.save(update_fields=["is_staff"])
    assert client.get("/api/ratings/", HTTP_AUTHORIZATION=f"Bearer {own}").status_code == 401
    assert client.get("/api/ratings/", **minted).status_code == 401  # what it minted as staff stops too


def test_the_schema_and_docs_need_a_signed_in_user(client, rater_key):
    # every endpoint, filter and scope was open to anyone
    assert client.get("/api/schema/").status_code == 401
    assert client.get("/api/docs/").status_code in (401, 403)
    assert client.get("/api/schema/", HTTP_AUTHORIZATION=f"Bearer {rater_key}").status_code == 200


def test_the_token_list_says_which_tokens_are_refused_and_why(staff_api, staff, rater):
    # a token stopped by its account's promotion kept revoked_at empty: listed like a working one
    from labelapp.services.tokens import token_create

    token_create(user=rater, name="feed", created_by=staff)
    rows = staff_api.get("/api/tokens/").json()["results"]
    assert [r["state"] for r in rows] == ["active"]
    rater.is_staff = True
    rater.save(update_fields=["is_staff"])
    rows = staff_api.get("/api/tokens/").json()["results"]
    assert [r["state"] for r in rows] == ["revoked"]  # for good, at the change
    # an update that sends no signal: refused at once, and revoked when next presented
    from labelapp.services.tokens import token_authenticate

    rater.is_staff = False
    rater.save(update_fields=["is_staff"])
    _, key = token_create(user=rater, name="feed2", created_by=staff)
    get_user_model().objects.filter(pk=rater.pk).update(is_staff=True)
    rows = {r["name"]: r["state"] for r in staff_api.get("/api/tokens/").json()["results"]}
    assert rows["feed2"] == "account promoted or demoted"
    assert token_authenticate(key=key) is None
    get_user_model().objects.filter(pk=rater.pk).update(is_staff=False)
    assert token_authenticate(key=key) is None and ApiToken.objects.get(name="feed2").revoked_at


def test_a_token_minted_from_a_stopped_token_is_listed_as_stopped(staff_api, staff, rater, client):
    # a token refused because the one it was minted from had expired was listed "active"
    root = _key(staff, ["admin", "read", "rate"])
    child, child_auth = _mint(client, root, "rater", scopes=["rate"])
    parent = ApiToken.objects.get(pk=child["id"]).parent
    ApiToken.objects.filter(pk=parent.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    states = {r["id"]: r["state"] for r in staff_api.get("/api/tokens/").json()["results"]}
    assert states[parent.pk] == "expired"
    assert states[child["id"]] == "minted from a stopped token"
    assert client.get("/api/ratings/", **child_auth).status_code == 401


@pytest.mark.parametrize("url", ["/api/queue/", "/api/schema/"])
@pytest.mark.parametrize("auth", [{}, {"HTTP_AUTHORIZATION": "Bearer rlhf_abcdef_guessed"}])
def test_anonymous_requests_and_guessed_tokens_are_throttled_per_address(client, auth, url):
    # DRF checks the rate limits after authentication and permissions: every anonymous request, and
    # every guessed token, was a 401 that was never counted (API_THROTTLE_ANON never applied)
    from django.core.cache import cache
    from rest_framework.throttling import SimpleRateThrottle

    cache.clear()
    old = SimpleRateThrottle.THROTTLE_RATES
    SimpleRateThrottle.THROTTLE_RATES = {**old, "anon": "3/min"}
    try:
        codes = [client.get(url, **auth).status_code for _ in range(5)]
    finally:
        SimpleRateThrottle.THROTTLE_RATES = old
        cache.clear()
    assert codes == [401, 401, 401, 429, 429]
