"""Regression tests for the bugs of issue 6 found when the app was tried as a new user would.

Each failed before its fix: guideline version not enforced in the htmx flow and the services, hidden
field errors swallowed, the length rule outside the service, ratings editable in the admin, "Start
rating" with nothing left. (Sanitizer bugs: tests/labelapp/test_rendering.py.)
"""

import uuid

import pytest
from django.urls import reverse

from labelapp.models import Assignment, Rating, RatingReview
from labelapp.services.assignment import assignment_next
from labelapp.services.guidelines import GuidelineAckRequired, guideline_acknowledge, guideline_create
from labelapp.services.ratings import (
    GuidelineNotAcknowledged,
    LengthCheckRequired,
    RatingInput,
    length_check_asked,
    rating_submit,
)

pytestmark = pytest.mark.django_db

SHORT = "Paris."
LONG = "The capital of France is Paris. " * 10


def _post(client, assignment, htmx=False, **fields):
    data = {"form_key": str(assignment.form_key), "time_on_task_ms": "1234", **fields}
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    return client.post(reverse("rate", args=[assignment.pk]), data, **headers)


# --- guideline version enforced in the services and the htmx flow ---------------------------------


def test_a_rating_never_carries_a_version_the_rater_did_not_acknowledge(
    rater_client, rater, acked, make_comparison
):
    make_comparison(prompt_text="one")
    make_comparison(prompt_text="two")
    a = assignment_next(rater=rater)
    v2 = guideline_create(text="v2: prefer the concise answer, always", publish=True)
    r = _post(rater_client, a, htmx=True, preference="0")  # the page was open under v1
    assert r.status_code == 200
    rating = Rating.objects.get()
    assert rating.guideline_version_id == acked.pk != v2.pk
    # The next panel is the acknowledgment of v2, not another comparison.
    html = r.content.decode()
    assert 'id="acknowledge"' in html and "version 2" in html and 'id="rating-form"' not in html
    assert not Assignment.objects.filter(rater=rater, status="leased").exists()


def test_the_claim_service_refuses_until_the_new_version_is_acknowledged(rater, acked, make_comparison):
    make_comparison()
    make_comparison(prompt_text="other")
    first = assignment_next(rater=rater)
    v2 = guideline_create(text="v2", publish=True)
    with pytest.raises(GuidelineAckRequired):
        assignment_next(rater=rater)  # even the open lease is not handed back under v2
    with pytest.raises(GuidelineAckRequired):
        assignment_next(rater=rater, just_finished=True)  # the one-statement claim checks it too
    guideline_acknowledge(rater=rater, version=v2)
    assert assignment_next(rater=rater).pk == first.pk
    rating, _ = rating_submit(
        rater=rater, assignment_id=first.pk, idempotency_key=first.form_key, data=RatingInput(preference=0)
    )
    assert rating.guideline_version_id == v2.pk


def test_the_submit_service_refuses_a_rater_who_acknowledged_nothing(rater, guideline, make_comparison):
    c = make_comparison()
    # A lease made by hand (the queue itself would refuse this rater).
    a = Assignment.objects.create(
        rater=rater,
        comparison=c,
        shown_left="a",
        issued_at="2026-01-01T00:00:00Z",
        lease_expires_at="2099-01-01T00:00:00Z",
        form_key=uuid.uuid4(),
    )
    with pytest.raises(GuidelineNotAcknowledged):
        rating_submit(
            rater=rater, assignment_id=a.pk, idempotency_key=a.form_key, data=RatingInput(preference=1)
        )
    assert Rating.objects.count() == 0


def test_the_api_answers_403_after_a_new_version(client, rater, acked, make_comparison):
    make_comparison()
    client.force_login(rater)
    assert client.get("/api/assignments/next/").status_code == 200
    guideline_create(text="v2", publish=True)
    r = client.get("/api/assignments/next/")
    assert r.status_code == 403 and "version 2" in r.json()["detail"]


def test_the_acknowledgment_shows_the_diff_to_the_version_last_acknowledged(rater_client, acked):
    guideline_create(text="# Guidelines\n\nPrefer the concise answer when content is equal.", publish=True)
    guideline_create(
        text="# Guidelines\n\nPrefer the concise answer when content is equal.\n\nNEW RULE: flag PII.",
        publish=True,
        changelog="personal data rule",
    )
    html = rater_client.get(reverse("guidelines")).content.decode()
    assert 'id="guideline-diff"' in html and "since version 1" in html
    assert "NEW RULE" in html and "personal data rule" in html


# --- hidden-field errors shown -------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"form_key": "not-a-uuid"}, "form&#x27;s key is damaged"),
        ({"time_on_task_ms": "abc"}, "timer sent a bad value"),
        ({"time_on_task_ms": "-5"}, "timer sent a bad value"),
    ],
)
def test_errors_on_hidden_fields_are_shown(rater_client, rater, acked, make_comparison, fields, message):
    make_comparison(a="Four.", b="4")
    a = assignment_next(rater=rater)
    r = _post(rater_client, a, htmx=True, preference="1", **fields)
    html = r.content.decode()
    assert r.status_code == 200 and message in html and 'role="alert"' in html
    # The re-rendered form carries a valid key, so submitting again works.
    assert f'name="form_key" value="{a.form_key}"' in html
    assert _post(rater_client, a, preference="1").status_code == 302


# --- the length rule in the service --------------------------------------------------------------


def test_the_service_enforces_the_length_check_for_every_caller(rater, acked, make_comparison):
    make_comparison(a=SHORT, b=LONG)
    a = assignment_next(rater=rater)
    with pytest.raises(LengthCheckRequired) as info:
        rating_submit(
            rater=rater, assignment_id=a.pk, idempotency_key=a.form_key, data=RatingInput(preference=3)
        )
    assert info.value.field == "length_check" and "adds content or adds nothing" in str(info.value)
    assert Rating.objects.count() == 0 and Assignment.objects.get().status == "leased"
    rating, created = rating_submit(
        rater=rater,
        assignment_id=a.pk,
        idempotency_key=a.form_key,
        data=RatingInput(preference=3, length_check="adds_nothing"),
    )
    assert created and rating.length_check == "adds_nothing"


def test_the_api_enforces_the_length_check(client, rater, acked, make_comparison):
    make_comparison(a=SHORT, b=LONG)
    client.force_login(rater)
    body = client.get("/api/assignments/next/").json()
    url = f"/api/assignments/{body['id']}/rating/"
    r = client.post(
        url, {"preference": 3, "idempotency_key": body["idempotency_key"]}, content_type="application/json"
    )
    assert r.status_code == 400 and "length_check" in r.json()
    bad = {"preference": 3, "idempotency_key": body["idempotency_key"], "length_check": "maybe"}
    assert client.post(url, bad, content_type="application/json").status_code == 400


@pytest.mark.parametrize(
    "words_a, words_b, preference",
    [
        (2, 3, 1),
        (2, 3, -1),
        (10, 15, 1),
        (10, 14, 1),
        (0, 2, 1),
        (0, 1, 1),
        (30, 2, -3),
        (30, 2, 3),
        (5, 50, 0),
    ],
)
def test_the_sql_length_rule_matches_the_python_one(
    rater, acked, make_comparison, words_a, words_b, preference
):
    make_comparison(a=" ".join(["a"] * words_a) or " ", b=" ".join(["b"] * words_b) or " ")
    a = assignment_next(rater=rater)
    asked = length_check_asked(preference=preference, words_a=words_a, words_b=words_b)
    data = RatingInput(preference=preference)
    if asked:
        with pytest.raises(LengthCheckRequired):
            rating_submit(rater=rater, assignment_id=a.pk, idempotency_key=a.form_key, data=data)
    else:
        rating, _ = rating_submit(
            rater=rater,
            assignment_id=a.pk,
            idempotency_key=a.form_key,
            data=RatingInput(preference=preference, length_check="adds_content"),
        )
        assert rating.length_check == ""  # not asked: not stored


# --- ratings read-only in the admin --------------------------------------------------------------


def test_ratings_are_read_only_in_the_admin_and_reviews_are_recorded(
    client, staff, rater, acked, make_comparison
):
    staff.is_superuser = True
    staff.save()
    make_comparison(a="Four.", b="4")
    a = assignment_next(rater=rater)
    rating, _ = rating_submit(
        rater=rater, assignment_id=a.pk, idempotency_key=a.form_key, data=RatingInput(preference=1)
    )
    client.force_login(staff)
    assert client.get(reverse("admin:labelapp_rating_add")).status_code == 403
    change_url = reverse("admin:labelapp_rating_change", args=[rating.pk])
    page = client.get(change_url)
    assert page.status_code == 200 and b'name="preference"' not in page.content  # view only
    assert client.post(change_url, {"preference": -3}).status_code == 403
    assert (
        client.post(reverse("admin:labelapp_rating_delete", args=[rating.pk]), {"post": "yes"}).status_code
        == 403
    )
    changelist = reverse("admin:labelapp_rating_changelist")
    ask = client.post(changelist, {"action": "exclude_ratings", "_selected_action": [rating.pk]})
    assert ask.status_code == 200 and b'name="reason"' in ask.content
    client.post(
        changelist, {"action": "exclude_ratings", "_selected_action": [rating.pk], "apply": "1", "reason": ""}
    )
    assert not RatingReview.objects.exists()  # a reason is required
    client.post(
        changelist,
        {"action": "exclude_ratings", "_selected_action": [rating.pk], "apply": "1", "reason": "spam"},
    )
    review = RatingReview.objects.get()
    assert (review.decision, review.reason, review.reviewer) == ("exclude", "spam", staff)
    rating.refresh_from_db()
    assert rating.preference == 1 and not Rating.objects.not_excluded().exists()
    assert client.get(reverse("admin:labelapp_ratingreview_add")).status_code == 403


# --- the rater home page -------------------------------------------------------------------------


def test_the_home_page_says_when_nothing_is_left(rater_client, rater, acked, make_comparison):
    html = rater_client.get(reverse("home")).content.decode()
    assert "Nothing is left to rate" in html and 'id="start"' not in html
    make_comparison()
    html = rater_client.get(reverse("home")).content.decode()
    assert 'id="start"' in html and "Nothing is left" not in html
