"""Tokens for programs: staff create and revoke them, only a hash is stored, revoked ones fail."""

from __future__ import annotations

import hashlib

import pytest

from labelapp.models import ApiToken

pytestmark = pytest.mark.django_db


def test_staff_create_a_token_that_is_stored_hashed_and_works(staff_api, rater, client):
    r = staff_api.post("/api/tokens/", {"username": "rater", "name": "feed"}, content_type="application/json")
    assert r.status_code == 201
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
