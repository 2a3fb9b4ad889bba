"""The staff review list: flagged and both-bad ratings, confirm/exclude with a reason, withheld prompts."""

import itertools

import pytest
from django.urls import reverse

from labelapp.models import Assignment, Comparison, Prompt, Rating, RatingReview
from labelapp.services.assignment import assignment_next
from labelapp.services.ratings import RatingInput, rating_submit
from labelapp.services.review import ReviewError, rating_review_add
from labelapp.services.roles import NotPermitted

pytestmark = pytest.mark.django_db


def _rated(rater, comparison_kwargs, make_comparison, **data):
    make_comparison(**comparison_kwargs)
    a = assignment_next(rater=rater)
    return rating_submit(
        rater=rater, assignment_id=a.pk, idempotency_key=a.form_key, data=RatingInput(preference=0, **data)
    )[0]


_QUESTIONS = itertools.count(2)


def _open_then_flagged(rater, other_rater, make_comparison) -> Assignment:
    """`other_rater` holds a lease on a comparison that `rater` then rates with a personal-data flag.

    Each call asks its own question: a flag waiting for review holds every prompt asking the same one.
    """
    make_comparison(required_ratings=3, prompt_text=f"What is 2+{next(_QUESTIONS)}?")
    held = assignment_next(rater=other_rater)
    a = assignment_next(rater=rater)
    data = RatingInput(preference=0, flag_pii=True)
    rating_submit(rater=rater, assignment_id=a.pk, idempotency_key=a.form_key, data=data)
    return held


def test_raters_cannot_see_or_use_the_review_list(client, rater, acked, make_comparison):
    rating = _rated(rater, {}, make_comparison, flag_unsafe=True)
    client.force_login(rater)
    assert client.get(reverse("staff_review")).status_code == 403
    r = client.post(reverse("staff_review_decide", args=[rating.pk]), {"decision": "exclude", "reason": "x"})
    assert r.status_code == 403 and not RatingReview.objects.exists()
    with pytest.raises(NotPermitted):
        rating_review_add(rating=rating, decision="exclude", reason="x", reviewer=rater)


def test_the_list_shows_flagged_and_both_bad_ratings_only(client, staff, rater, acked, make_comparison):
    flagged = _rated(rater, {"prompt_text": "FLAGGED-PROMPT"}, make_comparison, flag_broken=True)
    both_bad = _rated(rater, {"prompt_text": "BOTH-BAD-PROMPT"}, make_comparison, both_bad=True)
    _rated(rater, {"prompt_text": "PLAIN-PROMPT"}, make_comparison)
    client.force_login(staff)
    html = client.get(reverse("staff_review")).content.decode()
    assert f'id="review-{flagged.pk}"' in html and f'id="review-{both_bad.pk}"' in html
    assert "PLAIN-PROMPT" not in html
    only_broken = client.get(reverse("staff_review"), {"flag": "broken"}).content.decode()
    assert "FLAGGED-PROMPT" in only_broken and "BOTH-BAD-PROMPT" not in only_broken


def test_each_row_says_what_the_rater_judged(client, staff, rater, acked, make_comparison):
    # a reviewer deciding on a flagged rating could not see which answer the rater preferred
    make_comparison(prompt_text="P")
    a = assignment_next(rater=rater)
    rating = rating_submit(
        rater=rater, assignment_id=a.pk, idempotency_key=a.form_key,
        data=RatingInput(preference=-2, flag_unsafe=True),
    )[0]  # fmt: skip
    client.force_login(staff)
    html = client.get(reverse("staff_review")).content.decode()
    row = html[html.index(f'id="review-{rating.pk}"') :]
    assert "Judged: <strong>A better</strong>" in row[: row.index("</tr>")]


def test_exclude_needs_a_reason_and_keeps_the_rating_out_of_training(
    client, staff, rater, acked, make_comparison
):
    rating = _rated(rater, {}, make_comparison, flag_unsafe=True)
    client.force_login(staff)
    url = reverse("staff_review_decide", args=[rating.pk])
    r = client.post(url, {"decision": "exclude", "reason": "  "}, HTTP_HX_REQUEST="true")
    assert r.status_code == 200 and b"Give a reason" in r.content and not RatingReview.objects.exists()
    assert client.post(url, {"decision": "maybe", "reason": "x"}).status_code == 400
    r = client.post(
        url, {"decision": "exclude", "reason": "unsafe content confirmed"}, HTTP_HX_REQUEST="true"
    )
    assert r.status_code == 200 and b"unsafe content confirmed" in r.content
    assert not Rating.objects.not_excluded().filter(pk=rating.pk).exists()
    html = client.get(reverse("staff_review")).content.decode()  # open list: reviewed ones are gone
    assert f'id="review-{rating.pk}"' not in html
    assert (
        f'id="review-{rating.pk}"' in client.get(reverse("staff_review"), {"state": "done"}).content.decode()
    )


def test_the_newest_review_is_in_force_an_excluded_then_confirmed_rating_is_back(
    staff, rater, acked, make_comparison
):
    # any EXCLUDE ever recorded kept a rating out, although the newest review is the one in force
    from labelapp.services.review import rating_review_add

    rating = _rated(rater, {}, make_comparison, flag_unsafe=True)
    rating_review_add(rating=rating, decision="exclude", reason="looked unsafe", reviewer=staff)
    assert not Rating.objects.not_excluded().filter(pk=rating.pk).exists()
    rating_review_add(rating=rating, decision="confirm", reason="second look: fine", reviewer=staff)
    assert Rating.objects.not_excluded().filter(pk=rating.pk).exists()
    rating_review_add(rating=rating, decision="exclude", reason="third look: out", reviewer=staff)
    assert not Rating.objects.not_excluded().filter(pk=rating.pk).exists()


def test_a_confirmed_personal_data_flag_withholds_the_prompt(
    client, staff, rater, other_rater, acked, make_comparison
):
    held = _open_then_flagged(rater, other_rater, make_comparison)  # another rater holds it right now
    rating = Rating.objects.get(rater=rater)
    comparison = rating.comparison
    assert held.comparison_id == comparison.pk
    client.force_login(staff)
    client.post(
        reverse("staff_review_decide", args=[rating.pk]), {"decision": "confirm", "reason": "a phone number"}
    )
    assert Prompt.objects.get(pk=comparison.prompt_id).withheld
    assert Assignment.objects.get(pk=held.pk).status == "expired"  # taken back
    assert assignment_next(rater=other_rater) is None
    # Even if staff re-activate the comparison, the queue never serves a withheld prompt.
    Comparison.objects.filter(pk=comparison.pk).update(is_active=True)
    assert assignment_next(rater=other_rater, just_finished=True) is None
    assert Rating.objects.not_excluded().filter(pk=rating.pk).exists()  # confirm keeps the rating


def test_confirming_a_non_pii_flag_does_not_withhold(staff, rater, acked, make_comparison):
    rating = _rated(rater, {}, make_comparison, flag_broken=True)
    rating_review_add(rating=rating, decision="confirm", reason="markdown broken", reviewer=staff)
    assert not Prompt.objects.get(pk=rating.comparison.prompt_id).withheld


def test_a_late_submit_on_a_withheld_prompt_is_refused(staff, rater, other_rater, acked, make_comparison):
    from labelapp.services.ratings import RatingError

    open_page = _open_then_flagged(rater, other_rater, make_comparison)  # the other rater has the page open
    flagged = Rating.objects.get(rater=rater)
    rating_review_add(rating=flagged, decision="confirm", reason="an address", reviewer=staff)
    with pytest.raises(RatingError, match="withdrawn"):
        rating_submit(
            rater=other_rater,
            assignment_id=open_page.pk,
            idempotency_key=open_page.form_key,
            data=RatingInput(preference=0),
        )
    assert Rating.objects.filter(rater=other_rater).count() == 0


def test_a_nul_in_the_reason_is_refused_with_a_message(client, staff, rater, acked, make_comparison):
    # PostgreSQL refuses NUL in text columns: the review was a 500 instead of an error on the row.
    rating = _rated(rater, {}, make_comparison, flag_unsafe=True)
    with pytest.raises(ReviewError, match="NUL"):
        rating_review_add(rating=rating, decision="exclude", reason="bad\x00", reviewer=staff)
    client.force_login(staff)
    url = reverse("staff_review_decide", args=[rating.pk])
    r = client.post(url, {"decision": "exclude", "reason": "TYPED\x00"})
    assert r.status_code == 400 and b"NUL" in r.content and b"TYPED" in r.content
    r = client.post(url, {"decision": "exclude", "reason": "TYPED\x00"}, HTTP_HX_REQUEST="true")
    assert r.status_code == 200 and b"NUL" in r.content
    assert not RatingReview.objects.exists()


def test_an_over_long_reason_is_refused_not_cut(staff, rater, guideline):
    # It was cut to 500 characters without a word: the record then said less than was typed.
    from labelapp.services.review import REASON_MAX, ReviewError, rating_review_add
    from tests.labelapp.export_helpers import make_pair, rate

    rating = rate(rater=rater, comparison=make_pair(), preference=1, guideline=guideline)
    with pytest.raises(ReviewError, match=f"{REASON_MAX} characters"):
        rating_review_add(rating=rating, decision="exclude", reason="x" * (REASON_MAX + 1), reviewer=staff)
    assert not rating.reviews.exists()


def test_a_decision_sent_without_javascript_answers_with_a_page_not_a_table_row(
    client, staff, rater, acked, make_comparison
):
    # the plain form post got the bare <tr> fragment as its whole page, on success and on error
    rating = _rated(rater, {}, make_comparison, flag_unsafe=True)
    client.force_login(staff)
    url = reverse("staff_review_decide", args=[rating.pk])
    refused = client.post(url, {"decision": "exclude", "reason": "  "})
    body = refused.content.decode()
    assert refused.status_code == 400 and body.lstrip().startswith("<!doctype html>")
    assert "Give a reason" in body and f'id="review-{rating.pk}"' in body
    done = client.post(url, {"decision": "exclude", "reason": "unsafe content confirmed"}, follow=True)
    assert done.redirect_chain[-1][0] == reverse("staff_review")
    assert f"Rating {rating.pk}: " in done.content.decode() and RatingReview.objects.count() == 1


def test_a_decision_without_javascript_returns_to_the_list_as_the_reviewer_left_it(
    client, staff, rater, acked, make_comparison
):
    # the redirect went to the bare list: a reviewer working through "done, personal data, page 2"
    # was sent back to "open, any flag, page 1" after every decision
    rating = _rated(rater, {}, make_comparison, flag_unsafe=True)
    client.force_login(staff)
    listing = client.get(reverse("staff_review"), {"state": "all", "flag": "unsafe"}).content.decode()
    action = reverse("staff_review_decide", args=[rating.pk]) + "?state=all&amp;flag=unsafe"
    assert f'action="{action}"' in listing
    done = client.post(action.replace("&amp;", "&") + "&page=1", {"decision": "confirm", "reason": "seen"})
    assert done.status_code == 302
    assert done["Location"] == reverse("staff_review") + "?state=all&flag=unsafe&page=1"
    bad = client.post(
        reverse("staff_review_decide", args=[rating.pk]) + "?state=<x>&flag=evil&page=-1",
        {"decision": "confirm", "reason": "again"},
    )
    assert bad["Location"] == reverse("staff_review")


def test_a_prompt_flagged_for_personal_data_is_not_served_again_until_reviewed(
    staff, rater, other_rater, acked, make_comparison
):
    # exports and training held it back, but the queue went on showing it to every other rater
    held = _open_then_flagged(rater, other_rater, make_comparison)
    flagged = Rating.objects.get(rater=rater)
    later = make_comparison(prompt_text="fine", required_ratings=1)
    again = assignment_next(rater=other_rater)  # a reload: the open lease is taken back
    assert again.comparison_id == later.pk
    assert Assignment.objects.get(pk=held.pk).status == "expired"
    from labelapp.services.queue import queue_figures

    assert queue_figures()["pending"] == 0  # the held prompt's two free slots are not pending work
    Assignment.objects.filter(pk=again.pk).update(status="skipped")
    assert assignment_next(rater=other_rater, just_finished=True) is None
    rating_review_add(rating=flagged, decision="exclude", reason="no personal data", reviewer=staff)
    assert assignment_next(rater=other_rater, just_finished=True).comparison_id == flagged.comparison_id


def test_a_reload_of_the_rating_page_sets_a_held_prompt_aside(
    client, rater, other_rater, acked, make_comparison
):
    # /rate/N/ only renewed the lease: the held prompt was shown again, and its submit stored
    held = _open_then_flagged(rater, other_rater, make_comparison)
    client.force_login(other_rater)
    r = client.get(reverse("rate", args=[held.pk]), follow=True)
    assert r.content.decode().count("set aside") == 1  # said once (the next page said it again)
    assert Assignment.objects.get(pk=held.pk).status == "expired"


def test_the_api_detail_of_an_open_lease_on_a_held_prompt_is_gone(
    client, rater, other_rater, acked, make_comparison
):
    held = _open_then_flagged(rater, other_rater, make_comparison)
    client.force_login(other_rater)
    r = client.get(f"/api/assignments/{held.pk}/")
    assert r.status_code == 404 and "personal-data" in r.json()["detail"]
    assert Assignment.objects.get(pk=held.pk).status == "expired"


def test_a_finished_assignment_on_a_held_prompt_is_not_read_back_through_the_api(
    client, rater, other_rater, acked, make_comparison
):
    # the rater who judged it before another flagged it read the texts back (the queue, exports and
    # training all held them)
    make_comparison(prompt_text="SECRET-PROMPT", required_ratings=3)
    done = assignment_next(rater=other_rater)
    data = RatingInput(preference=1, length_check="adds_content")
    rating_submit(rater=other_rater, assignment_id=done.pk, idempotency_key=done.form_key, data=data)
    client.force_login(other_rater)
    assert client.get(f"/api/assignments/{done.pk}/").status_code == 200
    a = assignment_next(rater=rater)
    rating_submit(
        rater=rater, assignment_id=a.pk, idempotency_key=a.form_key, data=RatingInput(0, flag_pii=True)
    )
    r = client.get(f"/api/assignments/{done.pk}/")
    assert r.status_code == 404 and "personal-data" in r.json()["detail"]
    assert "SECRET-PROMPT" not in r.content.decode()


@pytest.mark.parametrize("htmx", [False, True])
@pytest.mark.parametrize("path", ["rate", "skip"])
def test_a_form_error_on_a_held_prompt_sets_it_aside_instead_of_showing_it_again(
    client, rater, other_rater, acked, make_comparison, path, htmx
):
    # only a GET of /rate/N/ took the lease back: a submit without a choice, or a skip without a reason,
    # showed the held prompt's texts again (page and htmx panel) and left the lease open
    held = _open_then_flagged(rater, other_rater, make_comparison)
    Prompt.objects.filter(pk=held.comparison.prompt_id).update(text="SECRET-PROMPT")
    client.force_login(other_rater)
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    if path == "rate":
        r = client.post(reverse("rate", args=[held.pk]), {"form_key": str(held.form_key)}, **headers)
    else:
        r = client.post(reverse("rate_skip", args=[held.pk]), {"reason": ""}, **headers)
    assert "SECRET-PROMPT" not in r.content.decode()
    assert r.status_code in (200, 302)
    assert (
        Assignment.objects.get(pk=held.pk).status == "expired"
        and not Rating.objects.filter(rater=other_rater).exists()
    )
    if r.status_code == 302 or "HX-Redirect" in r:
        r = client.get(r.get("HX-Redirect") or r["Location"], follow=True)
    assert "set aside" in r.content.decode() and "Nothing was saved" in r.content.decode()


def test_rate_says_the_open_comparison_was_set_aside_not_that_all_was_judged(
    client, rater, other_rater, acked, make_comparison
):
    # the lease was taken back and the page said "you have judged every comparison available to you"
    _open_then_flagged(rater, other_rater, make_comparison)
    client.force_login(other_rater)
    page = client.get(reverse("rate_next")).content.decode()
    assert "was set aside" in page


def test_the_api_next_says_the_open_comparison_was_set_aside(
    client, rater, other_rater, acked, make_comparison
):
    # the API took the held lease back and handed out the next comparison without a word
    held = _open_then_flagged(rater, other_rater, make_comparison)
    make_comparison(prompt_text="another question")
    client.force_login(other_rater)
    r = client.get("/api/assignments/next/")
    assert r.status_code == 200 and r.json()["id"] != held.pk and "was set aside" in r.json()["notice"]
    assert client.get("/api/assignments/next/").json()["notice"] is None  # said once


def test_a_withdrawn_prompt_s_open_lease_is_reported_on_the_page_and_in_the_api(
    client, staff, rater, other_rater, acked, make_comparison, django_capture_on_commit_callbacks
):
    # comparisons_withdraw ends the lease at once: by the next ask there was no open lease to compare
    # with, so neither the page nor the API said anything (the 204 had no room for it either)
    from labelapp.services.review import prompt_withhold

    held = _open_then_flagged(rater, other_rater, make_comparison)
    with django_capture_on_commit_callbacks(execute=True):
        prompt_withhold(prompt_id=held.comparison.prompt_id)
    client.force_login(other_rater)
    r = client.get("/api/assignments/next/")
    assert r.status_code == 204 and "was set aside" in r["Notice"]
    assert "Notice" not in client.get("/api/assignments/next/")  # said once
    second = _open_then_flagged(rater, other_rater, make_comparison)
    with django_capture_on_commit_callbacks(execute=True):
        prompt_withhold(prompt_id=second.comparison.prompt_id)
    assert "was set aside" in client.get(reverse("rate_next")).content.decode()
    third = _open_then_flagged(rater, other_rater, make_comparison)
    with django_capture_on_commit_callbacks(execute=True):
        prompt_withhold(prompt_id=third.comparison.prompt_id)
    page = client.get(reverse("rate", args=[third.pk]), follow=True).content.decode()
    assert "was withdrawn" in page and "set aside" not in page  # opened: said there, once


def test_a_lease_past_its_deadline_set_aside_on_reload_is_reported(
    client, rater, other_rater, acked, make_comparison
):
    # ended after its deadline, it read as a lease that merely ran out: no word
    from datetime import timedelta

    from django.utils import timezone

    held = _open_then_flagged(rater, other_rater, make_comparison)
    Assignment.objects.filter(pk=held.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=5))
    client.force_login(other_rater)
    assert "was set aside" in client.get(reverse("rate_next")).content.decode()


def test_the_same_decision_posted_twice_is_recorded_once(client, staff, rater, acked, make_comparison):
    # a double-clicked decision (or the same form in two tabs) recorded two identical reviews
    rating = _rated(rater, {}, make_comparison, flag_unsafe=True)
    client.force_login(staff)
    url = reverse("staff_review_decide", args=[rating.pk])
    for _ in range(2):
        assert client.post(url, {"decision": "exclude", "reason": "spam"}).status_code == 302
    assert RatingReview.objects.filter(rating=rating).count() == 1
    # a different decision (or reason) is a new review, in force as the newest
    rating_review_add(rating=rating, decision="confirm", reason="second look: fine", reviewer=staff)
    rating_review_add(rating=rating, decision="exclude", reason="spam", reviewer=staff)
    assert RatingReview.objects.filter(rating=rating).count() == 3


def test_home_offers_no_start_rating_for_a_lease_on_a_held_prompt_alone(
    client, rater, other_rater, acked, make_comparison
):
    # any open lease counted: "Start rating" led to the set-aside notice and an empty page
    _open_then_flagged(rater, other_rater, make_comparison)
    client.force_login(other_rater)
    page = client.get("/").content.decode()
    assert 'id="nothing-left"' in page
    make_comparison(prompt_text="another question")
    assert 'id="nothing-left"' not in client.get("/").content.decode()


def test_a_rationale_and_a_skip_reason_are_scrubbed_like_prompts(rater, acked, make_comparison):
    # stored and served as typed (the staff API, the review list), also after the prompt was withdrawn
    from labelapp.services.assignment import assignment_skip

    make_comparison(prompt_text="first", required_ratings=1)
    make_comparison(prompt_text="second", required_ratings=1)
    a = assignment_next(rater=rater)
    typed = "B leaks zed.quorrin@example.com and +44 20 7946 0958"
    data = RatingInput(preference=0, rationale=typed)
    rating, _ = rating_submit(rater=rater, assignment_id=a.pk, idempotency_key=a.form_key, data=data)
    rating.refresh_from_db()
    assert "quorrin@" not in rating.rationale and "7946" not in rating.rationale
    assert rating.rationale.startswith("B leaks [EMAIL]")
    b = assignment_next(rater=rater, just_finished=True)
    skipped = assignment_skip(rater=rater, assignment_id=b.pk, reason=f"names {typed}")
    skipped.refresh_from_db()
    assert "quorrin@" not in skipped.skip_reason and "[EMAIL]" in skipped.skip_reason


def test_a_confirmed_personal_data_report_withholds_the_same_text_in_another_case_too(
    staff, rater, acked, make_comparison
):
    # the twin (the same words, other case and spacing: the same personal data) went on being served,
    # trained on and exported
    flagged = _rated(
        rater, {"prompt_text": "Write to Anna Kowalska at 12 Elm Street"}, make_comparison, flag_pii=True
    )
    twin = make_comparison(prompt_text="write to anna kowalska  at 12 elm street")
    other = make_comparison(prompt_text="Write to Anna Kowalska at 14 Elm Street")
    rating_review_add(rating=flagged, decision="confirm", reason="an address", reviewer=staff)
    withheld = dict(Prompt.objects.values_list("pk", "withheld"))
    assert withheld[flagged.comparison.prompt_id] and withheld[twin.prompt_id]
    assert not withheld[other.prompt_id]
    assert not Comparison.objects.get(pk=twin.pk).is_active


def test_while_a_personal_data_report_waits_the_same_text_in_another_case_waits_too(
    staff, rater, other_rater, acked, make_comparison
):
    # the hold covered the flagged prompt's id only: its twin (the same words, other case and
    # spacing) went on being served to every rater, trained on and exported while the report waited
    from labelapp.services.policy import _usable_prompts

    twin_rating = _rated(
        other_rater, {"prompt_text": "Write to ANNA Kowalska at 12 Elm Street"}, make_comparison
    )
    flagged = _rated(
        rater, {"prompt_text": "Write to Anna Kowalska at 12 Elm Street"}, make_comparison, flag_pii=True
    )
    twin = make_comparison(prompt_text="write to anna kowalska  at 12 elm street")
    other = make_comparison(prompt_text="Write to Anna Kowalska at 14 Elm Street")
    held = {flagged.comparison.prompt_id, twin.prompt_id, twin_rating.comparison.prompt_id}
    assert assignment_next(rater=other_rater).comparison_id == other.pk  # the twin is not served
    assert not Rating.objects.usable().filter(pk=twin_rating.pk).exists()
    assert held.isdisjoint(_usable_prompts().values_list("pk", flat=True))
    rating_review_add(rating=flagged, decision="exclude", reason="no personal data", reviewer=staff)
    assert Rating.objects.usable().filter(pk=twin_rating.pk).exists()
    assert held <= set(_usable_prompts().values_list("pk", flat=True))
