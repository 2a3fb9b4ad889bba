"""A rating records the API token it came with: staff with the data-manager role may mint a `rate`
token for a rater, so a rating sent with one is not proof the rater judged it. The token, and who made
it, show beside the rating (staff API, review list, admin)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labelapp.models import ApiToken, Assignment, Rating
from labelapp.services.assignment import assignment_next
from labelapp.services.ratings import RatingInput, rating_submit

pytestmark = pytest.mark.django_db


def _rate(client, assignment, **headers):
    body = {"preference": -1, "idempotency_key": str(assignment.form_key), "flag_broken": True}
    return client.post(
        f"/api/assignments/{assignment.pk}/rating/", body, content_type="application/json", **headers
    )


def test_a_rating_sent_with_a_token_staff_minted_names_the_token_and_its_maker(
    staff_api, staff, rater, acked, make_comparison, client
):
    minted = staff_api.post(
        "/api/tokens/",
        {"username": "rater", "name": "on behalf", "scopes": ["rate"]},
        content_type="application/json",
    ).json()
    make_comparison(a="Four.", b="4")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {minted['key']}"}
    nxt = client.get("/api/assignments/next/", **auth)
    assert nxt.status_code == 200
    assignment = Assignment.objects.get(pk=nxt.json()["id"])
    assert _rate(client, assignment, **auth).status_code == 201

    rating = Rating.objects.get()
    assert rating.api_token_id == minted["id"]
    assert (
        rating.submitted_via()
        == f"API token {rating.api_token.prefix} (\u201con behalf\u201d), made by staff"
    )
    row = staff_api.get("/api/staff/ratings/").json()["results"][0]
    assert row["api_token"] == rating.api_token.prefix and "made by staff" in row["submitted_via"]
    page = staff_api.get("/staff/review/?state=all")  # flagged "broken": it is in the review list
    assert "made by staff" in page.content.decode()
    admin = staff_api.get(f"/admin/labelapp/rating/{rating.pk}/change/")
    assert admin.status_code == 200 and "made by staff" in admin.content.decode()
    assert "made by staff" in staff_api.get("/admin/labelapp/rating/").content.decode()


def test_a_rating_from_the_session_has_no_token(api, rater, acked, make_comparison, staff_api):
    make_comparison(a="Four.", b="4")
    assert _rate(api, assignment_next(rater=rater)).status_code == 201
    rating = Rating.objects.get()
    assert rating.api_token is None and rating.submitted_via().startswith("the rating page")
    row = staff_api.get("/api/staff/ratings/").json()["results"][0]
    assert row["api_token"] is None


def test_the_slow_path_records_the_token_too(rater, acked, make_comparison):
    from labelapp.services.tokens import token_create

    token, _ = token_create(user=rater, name="mine", scopes=["rate"])
    make_comparison(a="Four.", b="4")
    assignment = assignment_next(rater=rater)
    # a lease past its deadline takes the ORM path (the one statement matches no row)
    Assignment.objects.filter(pk=assignment.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    rating, created = rating_submit(
        rater=rater,
        assignment_id=assignment.pk,
        idempotency_key=assignment.form_key,
        data=RatingInput(preference=-1),
        token=token,
    )
    assert created and Rating.objects.get().api_token == token
    assert rating.submitted_via() == f"API token {token.prefix} (\u201cmine\u201d), maker not on record " + (
        "(a command, or an account since deleted)"
    )


def test_a_deleted_token_stays_on_its_ratings_and_the_admin_revokes_instead(
    rater, acked, make_comparison, staff, staff_api
):
    # emptied on deletion (also of a token minted through a deleted one), a staff-minted rating read
    # as if it came from the rating page
    from labelapp.services.tokens import token_create

    token, _ = token_create(user=rater, name="mine", scopes=["rate"], created_by=staff)
    make_comparison(a="Four.", b="4")
    assignment = assignment_next(rater=rater)
    rating_submit(
        rater=rater,
        assignment_id=assignment.pk,
        idempotency_key=assignment.form_key,
        data=RatingInput(preference=-1),
        token=token,
    )
    assert staff_api.post(f"/admin/labelapp/apitoken/{token.pk}/delete/").status_code == 403
    ApiToken.objects.filter(pk=token.pk).delete()
    rating = Rating.objects.get()
    assert rating.api_token_id == token.pk
    assert rating.submitted_via() == f"an API token since deleted (#{token.pk})"
    row = staff_api.get("/api/staff/ratings/").json()["results"][0]
    assert row["submitted_via"] == f"an API token since deleted (#{token.pk})" and row["api_token"] is None


def test_bidi_controls_typed_into_names_reasons_and_rationales_show_as_markers(
    staff_api, staff, rater, acked, make_comparison, client
):
    # a right-to-left override in a token's name, a rater's rationale or skip reason, or a run's error
    # reached the review list, the admin's read-only pages and the training pages raw: the text after
    # it read reversed
    from labelapp.models import TrainingRun

    rlo, mark = "\u202e", "\u27e6RLO U+202E\u27e7"
    minted = staff_api.post(
        "/api/tokens/",
        {"username": "rater", "name": f"tok{rlo}en", "scopes": ["rate"]},
        content_type="application/json",
    ).json()
    make_comparison(a="Four.", b="4")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {minted['key']}"}
    assignment = Assignment.objects.get(pk=client.get("/api/assignments/next/", **auth).json()["id"])
    assert _rate(client, assignment, **auth).status_code == 201
    rating = Rating.objects.get()
    Rating.objects.filter(pk=rating.pk).update(rationale=f"good{rlo}doog")
    Assignment.objects.filter(pk=assignment.pk).update(skip_reason=f"why{rlo}yhw")
    run = TrainingRun.objects.create(status="failed", error=f"broke{rlo}ekorb")
    pages = [
        "/staff/review/?state=all",
        f"/admin/labelapp/rating/{rating.pk}/change/",
        "/admin/labelapp/rating/",
        f"/admin/labelapp/assignment/{assignment.pk}/change/",
        f"/training/runs/{run.pk}/",
        "/training/",
    ]
    for url in pages:
        page = staff_api.get(url)
        assert page.status_code == 200, url
        body = page.content.decode()
        assert rlo not in body and mark in body, url


def test_an_admin_action_form_keeps_a_bidi_control_as_typed(staff_api, staff, rater, acked, make_comparison):
    # the read-only admin's markers replaced it in the action's form too (a reason sent back with an
    # error), and the corrected form then stored the marker text in place of the character
    from tests.labelapp.export_helpers import rate

    staff.is_superuser = True
    staff.save()
    rating = rate(rater=rater, comparison=make_comparison(), preference=1, guideline=acked)
    reason = "\u05e1\u05d9\u05d1\u05d4 \u200f" + "x" * 600  # too long: the form comes back
    r = staff_api.post(
        "/admin/labelapp/rating/",
        {"action": "exclude_ratings", "_selected_action": [rating.pk], "apply": "1", "reason": reason},
    )
    body = r.content.decode()
    assert r.status_code == 200 and "\u200f" in body and "RLM U+200F" not in body
