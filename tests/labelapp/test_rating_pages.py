"""The rating page: submitting, idempotency, ownership, form errors, length check, guidelines gate."""

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from labelapp.models import Assignment, GuidelineAcknowledgment, Rating
from labelapp.services.assignment import assignment_next
from labelapp.services.guidelines import guideline_create

pytestmark = pytest.mark.django_db

SHORT = "Paris."
LONG = "The capital of France is Paris. " * 10  # 60 words: far beyond 1.5x


def _post(client, assignment, htmx=False, **fields):
    data = {"form_key": str(assignment.form_key), "time_on_task_ms": "1234", **fields}
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    return client.post(reverse("rate", args=[assignment.pk]), data, **headers)


def test_it_redirects_to_guidelines_until_acknowledged(client, rater, guideline, make_comparison):
    make_comparison()
    client.force_login(rater)
    assert client.get(reverse("rate_next")).url == reverse("guidelines")
    client.post(reverse("guidelines"), {"version": guideline.pk})
    assert GuidelineAcknowledgment.objects.filter(rater=rater, version=guideline).exists()
    r = client.get(reverse("rate_next"))
    assert r.status_code == 302 and r.url.startswith("/rate/")


def test_a_new_guideline_version_must_be_acknowledged_again(rater_client, rater, make_comparison):
    make_comparison()
    assert rater_client.get(reverse("rate_next")).url.startswith("/rate/")
    v2 = guideline_create(text="v2: still prefer concise answers", publish=True)
    assert rater_client.get(reverse("rate_next")).url == reverse("guidelines")
    page = rater_client.get(reverse("guidelines"))
    assert b"version 2" in page.content
    rater_client.post(reverse("guidelines"), {"version": v2.pk})
    assert rater_client.get(reverse("rate_next")).url.startswith("/rate/")


def test_it_stores_a_rating_with_version_and_shown_order(rater_client, rater, acked, make_comparison):
    make_comparison(a="Four.", b="4")
    a = assignment_next(rater=rater)
    page = rater_client.get(reverse("rate", args=[a.pk]))
    assert page.status_code == 200 and b"Left answer" in page.content
    r = _post(rater_client, a, preference="-2", helpfulness="-1", rationale="A is clearer", flag_pii="on")
    assert r.status_code == 302
    rating = Rating.objects.get()
    assert (rating.preference, rating.helpfulness, rating.rationale, rating.flag_pii) == (
        -2,
        -1,
        "A is clearer",
        True,
    )
    assert rating.guideline_version_id == acked.pk
    assert rating.time_on_task_ms == 1234
    assert rating.assignment.shown_left in {"a", "b"}
    assert rating.assignment.status == "done"


def test_two_submits_with_the_same_key_give_one_row_and_the_same_response(
    rater_client, rater, acked, make_comparison
):
    make_comparison()
    make_comparison(prompt_text="Second prompt")
    a = assignment_next(rater=rater)
    first = _post(rater_client, a, htmx=True, preference="0")
    second = _post(rater_client, a, htmx=True, preference="0")
    assert first.status_code == second.status_code == 200
    # Both answer with the same next comparison (only the masked CSRF token differs).
    key = re.compile(rb'data-assignment="(\d+)"|name="form_key" value="([^"]+)"')
    assert key.findall(first.content) == key.findall(second.content) != []
    assert Rating.objects.filter(rater=rater).count() == 1


def test_a_second_rating_of_the_same_comparison_is_refused(rater_client, rater, acked, make_comparison):
    import uuid

    make_comparison(a="Four.", b="4")
    a = assignment_next(rater=rater)
    assert _post(rater_client, a, preference="1").status_code == 302
    again = rater_client.post(
        reverse("rate", args=[a.pk]), {"form_key": str(uuid.uuid4()), "preference": "-3"}, follow=True
    )
    assert again.redirect_chain[0][0] == reverse("rate_next")  # on to the next comparison, said why
    assert b"already rated this comparison" in again.content
    assert Rating.objects.get().preference == 1


@pytest.mark.parametrize("htmx", [False, True])
def test_a_late_submit_on_a_comparison_others_filled_leads_on_with_the_reason(
    rater_client, rater, other_rater, acked, make_comparison, htmx
):
    # the lease ran out and other raters filled the comparison: the same panel came back with "your
    # time ran out" on every submit, and nothing on it led on
    from datetime import timedelta

    from django.utils import timezone

    from labelapp.models import Comparison

    c = make_comparison(required_ratings=1)
    nxt = make_comparison(prompt_text="the next one")
    a = assignment_next(rater=rater)
    assert a.comparison_id == c.pk
    Assignment.objects.filter(pk=a.pk).update(
        status=Assignment.Status.EXPIRED, lease_expires_at=timezone.now() - timedelta(minutes=1)
    )
    Comparison.objects.filter(pk=c.pk).update(claimed_count=1)  # another rater took the slot
    r = _post(rater_client, a, htmx=htmx, preference="-2")  # the shorter one: no length question
    if htmx:
        assert r.status_code == 200 and b"ran out" in r.content
        assert f'data-assignment="{a.pk}"'.encode() not in r.content  # the next comparison, not this one
        assert Assignment.objects.get(rater=rater, status=Assignment.Status.LEASED).comparison_id == nxt.pk
    else:
        assert r.status_code == 302 and r.url == reverse("rate_next")
    assert not Rating.objects.exists()


def test_another_raters_assignment_is_404_and_nothing_changes(
    rater_client, rater, other_rater, acked, make_comparison
):
    make_comparison()
    theirs = assignment_next(rater=other_rater)
    assert rater_client.get(reverse("rate", args=[theirs.pk])).status_code == 404
    assert _post(rater_client, theirs, preference="3").status_code == 404
    assert rater_client.post(reverse("rate_skip", args=[theirs.pk]), {"reason": "x"}).status_code == 404
    assert rater_client.get(reverse("api-assignment", args=[theirs.pk])).status_code == 404
    assert Rating.objects.count() == 0
    theirs.refresh_from_db()
    assert theirs.status == "leased"


@pytest.mark.parametrize("bad", [{"preference": "9"}, {"preference": "abc"}, {}])
def test_invalid_values_give_a_form_error_and_keep_what_was_typed(
    rater_client, rater, acked, make_comparison, bad
):
    make_comparison()
    a = assignment_next(rater=rater)
    r = _post(rater_client, a, rationale="my <b>careful</b> reasoning", flag_unsafe="on", **bad)
    assert r.status_code == 400
    html = r.content.decode()
    assert "Choose one of the seven options" in html
    assert "my &lt;b&gt;careful&lt;/b&gt; reasoning" in html  # kept, and escaped
    assert 'name="flag_unsafe" checked' in html
    assert Rating.objects.count() == 0


def test_it_asks_whether_the_extra_length_adds_content(rater_client, rater, acked, make_comparison):
    make_comparison(a=SHORT, b=LONG)
    a = assignment_next(rater=rater)
    r = _post(rater_client, a, preference="2")  # B, the much longer one
    assert r.status_code == 400 and b"say whether its extra length adds content" in r.content
    r = _post(rater_client, a, preference="2", length_check="adds_nothing")
    assert r.status_code == 302
    assert Rating.objects.get().length_check == "adds_nothing"


def test_the_length_question_is_not_stored_when_the_shorter_answer_wins(
    rater_client, rater, acked, make_comparison
):
    make_comparison(a=SHORT, b=LONG)
    a = assignment_next(rater=rater)
    assert _post(rater_client, a, preference="-2", length_check="adds_content").status_code == 302
    assert Rating.objects.get().length_check == ""


def test_the_page_shows_word_counts_and_the_difference(rater_client, rater, acked, make_comparison):
    make_comparison(a=SHORT, b=LONG)
    a = assignment_next(rater=rater)
    html = rater_client.get(reverse("rate", args=[a.pk])).content.decode()
    assert "1 word<" in html and "1 words" not in html and "60 words" in html and "59 words longer" in html
    # each text takes its direction from its first letters: an Arabic answer was laid out left to right
    assert html.count('class="markdown" dir="auto"') == 3


def test_skip_through_the_page(rater_client, rater, acked, make_comparison):
    make_comparison()
    a = assignment_next(rater=rater)
    r = rater_client.post(reverse("rate_skip", args=[a.pk]), {"reason": "Outside my expertise"})
    assert r.status_code == 302
    a.refresh_from_db()
    assert a.status == Assignment.Status.SKIPPED


def test_an_empty_queue_shows_nothing_to_rate(rater_client):
    r = rater_client.get(reverse("rate_next"))
    assert r.status_code == 200 and b"Nothing to rate right now" in r.content
    # a new rater was thanked for having judged "every comparison available", beside "0 judged"
    assert b"judged every comparison" not in r.content and b"no comparison for you to judge yet" in r.content


def test_an_empty_queue_after_judging_thanks_the_rater(rater_client, rater, acked, make_comparison):
    make_comparison()
    a = assignment_next(rater=rater)
    r = rater_client.post(
        reverse("rate", args=[a.pk]),
        {"form_key": str(a.form_key), "preference": "0", "time_on_task_ms": "5000"},
        HTTP_HX_REQUEST="true",
    )
    assert r.status_code == 200 and b"judged every comparison available to you" in r.content


def test_htmx_submit_answers_with_the_next_panel(rater_client, rater, acked, make_comparison):
    make_comparison(prompt_text="first")
    second = make_comparison(prompt_text="second prompt here")
    a = assignment_next(rater=rater)
    r = _post(rater_client, a, htmx=True, preference="0")
    assert r.status_code == 200
    nxt = Assignment.objects.get(rater=rater, status="leased")
    assert nxt.comparison_id == second.pk
    assert f'data-assignment="{nxt.pk}"'.encode() in r.content
    assert r.headers["HX-Push-Url"] == reverse("rate", args=[nxt.pk])


def test_a_late_htmx_submit_after_a_reissue_answers_with_a_different_comparison(
    settings, rater_client, rater, acked, make_comparison
):
    from datetime import timedelta

    from django.utils import timezone

    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 0.0, "REPEAT_RATE": 0.0}
    first = make_comparison(prompt_text="first", required_ratings=3)
    second = make_comparison(prompt_text="second prompt here", required_ratings=3)
    old = assignment_next(rater=rater)
    Assignment.objects.filter(pk=old.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=1))
    assert rater_client.get(reverse("rate_next")).status_code == 302  # a reload re-issues "first"
    assert Assignment.objects.get(rater=rater, status="leased").comparison_id == first.pk
    r = _post(rater_client, old, htmx=True, preference="0")  # the old tab submits late
    assert r.status_code == 200 and b"already rated" not in r.content
    assert Rating.objects.get(rater=rater).comparison_id == first.pk
    nxt = Assignment.objects.get(rater=rater, status="leased")
    assert nxt.comparison_id == second.pk
    assert f'data-assignment="{nxt.pk}"'.encode() in r.content
    assert r.headers["HX-Push-Url"] == reverse("rate", args=[nxt.pk])


def test_pages_need_login(client):
    for name in ("home", "rate_next", "guidelines"):
        r = client.get(reverse(name))
        assert r.status_code == 302 and "/accounts/login/" in r.url


def test_home_shows_progress_and_staff_see_queue_figures(client, rater, staff, acked, make_comparison):
    make_comparison(required_ratings=2)
    client.force_login(rater)
    a = assignment_next(rater=rater)
    _post(client, a, preference="0")
    html = client.get(reverse("home")).content.decode()
    assert 'id="judged-today">1<' in html and 'id="judged-total">1<' in html
    assert "Queue" not in html
    client.force_login(staff)
    html = client.get(reverse("home")).content.decode()
    assert "Queue" in html and "has not run yet" in html


# --- Found by the ninth session's browser review ------------------------------------------------------


def test_a_resent_form_says_the_first_judgment_stands(rater_client, rater, acked, make_comparison):
    # Back restored a finished comparison; a new choice on it went nowhere without a word.
    make_comparison()
    make_comparison(prompt_text="Second prompt")
    a = assignment_next(rater=rater)
    first = _post(rater_client, a, htmx=True, preference="0")
    assert b"already submitted" not in first.content
    again = _post(rater_client, a, htmx=True, preference="-3", rationale="changed my mind")
    assert again.status_code == 200 and b"already submitted" in again.content
    assert again.headers["HX-Retarget"] == "#rate-root"
    rating = Rating.objects.get(rater=rater)
    assert (rating.preference, rating.rationale) == (0, "")  # evidence: never rewritten


def test_a_skip_without_a_reason_swaps_only_the_skip_form_and_keeps_what_was_typed(
    rater_client, rater, acked, make_comparison
):
    make_comparison()
    a = assignment_next(rater=rater)
    url = reverse("rate_skip", args=[a.pk])
    r = rater_client.post(url, {"reason": "  "}, HTTP_HX_REQUEST="true")
    assert r.status_code == 200
    body = r.content.decode()
    assert body.lstrip().startswith("<form") and 'id="skip-form"' in body
    assert 'id="rating-form"' not in body  # the rating form, and what the rater chose in it, stay
    assert 'role="alert"' in body and 'value="  "' in body
    a.refresh_from_db()
    assert a.status == Assignment.Status.LEASED
    page = rater_client.get(reverse("quality_me"))
    assert b"Say why" not in page.content  # no stale message on the next full page
    ok = rater_client.post(url, {"reason": "Outside my expertise"}, HTTP_HX_REQUEST="true")
    assert ok.headers["HX-Retarget"] == "#rate-root"  # a skip done swaps the whole panel


def test_without_javascript_the_skip_form_is_open_and_a_missing_reason_keeps_it_open(
    rater_client, rater, acked, make_comparison
):
    # the form was hidden and only rate.js opened it: a rater without JavaScript could not skip, and a
    # plain POST without a reason redirected with a message, losing what was typed
    make_comparison()
    a = assignment_next(rater=rater)
    page = rater_client.get(reverse("rate", args=[a.pk])).content.decode()
    assert (
        "<noscript><style>#skip-form[hidden] { display: block !important; }" in page
    )  # browser: test_rating_page_nojs
    r = rater_client.post(reverse("rate_skip", args=[a.pk]), {"reason": "   "})
    body = r.content.decode()
    assert r.status_code == 400 and body.count('id="skip-form"') == 1
    form = body[body.index('id="skip-form"') :]
    assert " hidden" not in form[: form.index(">")] and 'role="alert"' in form and 'value="   "' in form
    a.refresh_from_db()
    assert a.status == Assignment.Status.LEASED


def test_the_length_question_error_speaks_to_people(rater_client, rater, acked, make_comparison):
    make_comparison(a=SHORT, b=LONG)
    a = assignment_next(rater=rater)
    r = _post(rater_client, a, htmx=True, preference="3")  # B, the much longer one, much better
    shown = r.content.split(b'<input type="radio" name="length_check"')[0]  # the error, not the inputs
    assert b"adds content or adds nothing" in r.content and b"adds_content" not in shown


def test_staff_pages_give_a_rater_a_403_page_with_the_apps_header(rater_client):
    for name in ("training_home", "policy_home", "quality_dashboard", "staff_guidelines", "staff_review"):
        r = rater_client.get(reverse(name))
        assert r.status_code == 403, name  # /training/ and /policy/ sent raters to the admin's login
        assert b"Not allowed" in r.content and b"Preference loop" in r.content, name


def test_pages_link_a_favicon_served_from_static(rater_client):
    assert b'rel="icon"' in rater_client.get(reverse("home")).content


def test_rationale_and_dimension_errors_are_alerts_the_page_scrolls_to(
    rater_client, rater, acked, make_comparison
):
    # rate.js brings the first role="alert" error into view after a swap; these two had no role, so
    # the page scrolled to the top and the error stayed below the fold.
    make_comparison()
    a = assignment_next(rater=rater)
    r = _post(rater_client, a, htmx=True, preference="0", rationale="x" * 5001, helpfulness="9")
    body = r.content.decode()
    assert re.search(r'<div class="errors" role="alert" id="rationale-error">.*5000', body, re.S)
    assert 'aria-describedby="rationale-error"' in body  # the field names its error
    assert re.search(r'<span class="errors" role="alert">', body)


def test_a_skip_of_a_finished_comparison_through_htmx_navigates_instead_of_swapping_a_page_in(
    rater_client, rater, acked, make_comparison
):
    make_comparison()
    a = assignment_next(rater=rater)
    assert _post(rater_client, a, preference="0").status_code == 302
    r = rater_client.post(reverse("rate_skip", args=[a.pk]), {"reason": "late"}, HTTP_HX_REQUEST="true")
    assert r.headers["HX-Redirect"] == reverse("rate_next")


@pytest.mark.parametrize("htmx", [False, True])
@pytest.mark.parametrize("rationale", [b"caf%E9", b"caf\xe9", b"%ED%A0%80"])
def test_a_form_body_that_is_not_utf8_is_refused_not_stored_altered(
    rater_client, rater, acked, make_comparison, htmx, rationale
):
    # Django decoded these bytes as U+FFFD: the rating was stored with a rationale nobody wrote
    make_comparison()
    a = assignment_next(rater=rater)
    body = b"form_key=%s&time_on_task_ms=1234&preference=-2&rationale=%s" % (
        str(a.form_key).encode(),
        rationale,
    )
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    r = rater_client.post(
        reverse("rate", args=[a.pk]), body, content_type="application/x-www-form-urlencoded", **headers
    )
    assert r.status_code == 400 and b"not UTF-8: nothing was saved" in r.content
    assert not Rating.objects.exists()
    good = rater_client.post(
        reverse("rate", args=[a.pk]),
        body.replace(rationale, b"caf%C3%A9"),
        content_type="application/x-www-form-urlencoded",
        **headers,
    )
    assert good.status_code in (200, 302) and Rating.objects.get().rationale == "caf\u00e9"


@pytest.mark.parametrize("htmx", [False, True])
def test_a_skip_reason_of_invisible_characters_is_refused(rater_client, rater, acked, make_comparison, htmx):
    # a zero-width space alone was stored as the reason
    make_comparison()
    a = assignment_next(rater=rater)
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    r = rater_client.post(reverse("rate_skip", args=[a.pk]), {"reason": "\u200b\ufeff"}, **headers)
    assert b"Say why you skip" in r.content
    a.refresh_from_db()
    assert a.status == Assignment.Status.LEASED


def test_a_forged_guideline_version_says_unknown_version_not_python(rater_client):
    r = rater_client.post(reverse("guidelines"), {"version": "abc"}, follow=True)
    assert b"unknown version" in r.content and b"invalid literal" not in r.content


@pytest.mark.parametrize("path", ["rate", "rate_skip"])
def test_an_htmx_request_after_the_session_ended_goes_to_login_as_a_page_and_back(
    client, rater, acked, make_comparison, path
):
    # login_required's redirect was followed by htmx inside the panel: a login page swapped in under
    # the rating form, and after a skip the login led to the skip URL (a GET there: 405)
    make_comparison()
    a = assignment_next(rater=rater)
    page = reverse("rate", args=[a.pk])
    r = client.post(
        reverse(path, args=[a.pk]),
        {"preference": "-2", "reason": "x"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL=f"http://testserver{page}",
    )
    assert r.status_code == 200
    assert r["HX-Redirect"] == f"{reverse('login')}?next={page.replace('/', '%2F')}&unsaved=1"


def test_a_skip_url_opened_as_a_page_leads_to_its_comparison(rater_client, rater, acked, make_comparison):
    make_comparison()
    a = assignment_next(rater=rater)
    r = rater_client.get(reverse("rate_skip", args=[a.pk]))
    assert r.status_code == 302 and r.url == reverse("rate", args=[a.pk])


def test_the_next_panel_brings_the_guidelines_in_force_when_the_page_showed_another_version(
    rater_client, rater, acked, make_comparison
):
    # acknowledged in another tab: the next comparison was stored under v2 beside the v1 text
    from labelapp.services.guidelines import guideline_acknowledge

    make_comparison()
    make_comparison(prompt_text="second")
    a = assignment_next(rater=rater)
    page = rater_client.get(reverse("rate", args=[a.pk]))
    assert f'name="guideline_shown" value="{acked.pk}"'.encode() in page.content
    v2 = guideline_create(text="v2: prefer the shorter answer when both are right", publish=True)
    guideline_acknowledge(rater=rater, version=v2)  # the other tab
    r = _post(rater_client, a, htmx=True, preference="-2", guideline_shown=str(acked.pk))
    assert b'id="guidelines-panel"' in r.content and b'hx-swap-oob="true"' in r.content
    assert b"prefer the shorter answer" in r.content
    assert f'name="guideline_shown" value="{v2.pk}"'.encode() in r.content
    b_ = assignment_next(rater=rater)
    again = _post(rater_client, b_, htmx=True, preference="-2", guideline_shown=str(v2.pk))
    assert b'id="guidelines-panel"' not in again.content  # the page shows v2 already: nothing extra


def test_reloading_the_rating_page_renews_a_lease_that_ran_out(rater_client, rater, acked, make_comparison):
    # the address bar shows /rate/N/ after every swap: a reload there never renewed the lease, so the
    # housekeeping released it and the submit was refused although the rater had reloaded
    from datetime import timedelta

    from django.utils import timezone

    make_comparison()
    a = assignment_next(rater=rater)
    Assignment.objects.filter(pk=a.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=1))
    assert rater_client.get(reverse("rate", args=[a.pk])).status_code == 200
    a.refresh_from_db()
    assert a.status == Assignment.Status.LEASED and a.lease_expires_at > timezone.now()


def test_an_htmx_skip_sends_the_side_panel_only_when_the_version_changed(
    rater_client, rater, acked, make_comparison
):
    # the skip form posted no guideline_shown: every skip re-sent the guidelines and un-hid the panel
    make_comparison()
    make_comparison(prompt_text="second")
    a = assignment_next(rater=rater)
    page = rater_client.get(reverse("rate", args=[a.pk]))
    assert b'hx-include="#rating-form [name=guideline_shown]"' in page.content
    r = rater_client.post(
        reverse("rate_skip", args=[a.pk]),
        {"reason": "Outside my expertise", "guideline_shown": str(acked.pk)},
        HTTP_HX_REQUEST="true",
    )
    assert r.status_code == 200 and b'id="guidelines-panel"' not in r.content


def test_a_page_form_sent_as_multipart_with_bytes_that_are_not_utf8_is_refused(
    rater_client, rater, make_comparison
):
    # Django's multipart parser decoded them as U+FFFD: the rationale was stored altered, without a word
    make_comparison(a=SHORT, b=LONG)
    a = assignment_next(rater=rater)
    head = '--zz\r\nContent-Disposition: form-data; name="{}"\r\n\r\n'
    fields = {"form_key": str(a.form_key), "time_on_task_ms": "1234", "preference": "-1",
              "length_check": "adds_content", "rationale": "na\udcefve"}  # fmt: skip
    body = b"".join(
        head.format(k).encode() + v.encode("utf-8", "surrogateescape") + b"\r\n" for k, v in fields.items()
    )
    r = rater_client.post(
        reverse("rate", args=[a.pk]), body + b"--zz--\r\n", content_type="multipart/form-data; boundary=zz"
    )
    assert r.status_code == 400 and b"not UTF-8" in r.content
    assert not Rating.objects.exists()


@pytest.mark.parametrize("htmx", [True, False])
def test_a_form_sent_after_the_session_ended_reaches_a_login_page_that_says_it_was_not_saved(
    client, rater, acked, make_comparison, htmx
):
    # the login page said nothing, and after logging in the comparison came back with an empty form
    make_comparison()
    a = assignment_next(rater=rater)
    page = reverse("rate", args=[a.pk])
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": f"http://testserver{page}"} if htmx else {}
    r = client.post(page, {"preference": "-2"}, **headers)
    target = r["HX-Redirect"] if htmx else r.url
    query = parse_qs(urlsplit(target).query)
    assert query == {"next": [page], "unsaved": ["1"]}
    assert "was not saved" in client.get(target).content.decode()
    assert "was not saved" not in client.get(f"{reverse('login')}?next={page}").content.decode()  # a GET


def test_a_logout_leads_to_a_login_page_without_the_unsaved_notice(rater_client):
    r = rater_client.post(reverse("logout"))
    assert "unsaved" not in r.url and "was not saved" not in rater_client.get(r.url).content.decode()


def test_with_debug_on_the_page_loads_no_script_that_takes_over_htmx_errors(
    rater_client, rater, acked, make_comparison, settings
):
    # `make run` has DEBUG on: django-htmx's debug script put Django's error page in place of the whole
    # rating page on a 400/403 (a CSRF token rotated by a second tab), before rate.js could say what to do
    settings.DEBUG = True
    make_comparison()
    a = assignment_next(rater=rater)
    page = rater_client.get(reverse("rate", args=[a.pk])).content.decode()
    assert "django_htmx/htmx-2.min.js" in page and "django-htmx.js" not in page
