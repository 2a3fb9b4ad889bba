"""The review list for keyboard and screen-reader users, in a real browser (an accessibility audit,
session 32; failed before): a decision swapped its row in and focus fell back to the page body, so the
reviewer lost their place in the list and heard nothing of what was recorded."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from labelapp.models import RatingReview
from tests.browser.test_guidelines_and_panels import _page, _user, browser  # noqa: F401 (the fixture)
from tests.labelapp.export_helpers import make_pair, rate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# ruff: noqa: F811 (the test takes the imported `browser` fixture as a parameter)


def test_a_decision_moves_focus_to_the_next_rows_reason_and_says_what_was_recorded(browser, live_server):
    from labelapp.services.guidelines import guideline_create

    guideline = guideline_create(text="# G\n\nBe fair.", publish=True)
    staff = _user("reviewer", staff=True)
    staff.groups.add(Group.objects.get(name="reviewer"))
    rater = _user("rater")
    ratings = [
        rate(rater=rater, comparison=make_pair(text=f"Question {i}?"), preference=1, guideline=guideline,
             flag_broken=True)
        for i in range(3)
    ]  # fmt: skip
    page = _page(browser, live_server, "reviewer")
    page.goto(f"{live_server.url}/staff/review/")
    newest = ratings[-1]
    row = page.locator(f"#review-{newest.pk}")
    row.locator('input[name="reason"]').fill("unreadable indeed")
    row.locator('button[value="confirm"]').click()
    page.wait_for_function(f"() => document.querySelector('#review-{newest.pk} .decision')")
    assert RatingReview.objects.filter(rating=newest).exists()
    following = ratings[-2]
    page.wait_for_function(
        f"() => document.activeElement && document.activeElement.closest('#review-{following.pk}') !== null"
    )
    assert page.evaluate("() => document.activeElement.name") == "reason"
    page.wait_for_function(
        f"() => document.getElementById('review-live').textContent.includes('Rating #{newest.pk}')"
    )


def test_the_first_tab_offers_a_skip_past_the_navigation(browser, live_server):
    staff = _user("reviewer", staff=True)
    page = _page(browser, live_server, staff.username)
    page.goto(f"{live_server.url}/staff/review/")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    assert page.locator(".skip-link").is_visible()  # shown once focused
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"


@pytest.mark.parametrize("failure", ["500", "no connection"])
def test_a_decision_that_gets_no_row_back_says_so_in_the_row(browser, live_server, failure):
    # a 403 (the CSRF token changed in another tab), a server error or a lost connection showed
    # nothing: no error, no live-region text, the row as it was
    from labelapp.services.guidelines import guideline_create

    guideline = guideline_create(text="# G\n\nBe fair.", publish=True)
    staff = _user("reviewer", staff=True)
    staff.groups.add(Group.objects.get(name="reviewer"))
    rating = rate(rater=_user("rater"), comparison=make_pair(text="Q?"), preference=1, guideline=guideline,
                  flag_broken=True)  # fmt: skip
    page = _page(browser, live_server, "reviewer")
    page.goto(f"{live_server.url}/staff/review/")
    if failure == "500":
        page.route(f"**/staff/review/{rating.pk}/", lambda route: route.fulfill(status=500, body="boom"))
    else:
        page.route(f"**/staff/review/{rating.pk}/", lambda route: route.abort())
    row = page.locator(f"#review-{rating.pk}")
    row.locator('input[name="reason"]').fill("unreadable indeed")
    row.locator('button[value="exclude"]').click()
    page.wait_for_selector(f"#review-{rating.pk} .review-failed")
    said = row.locator(".review-failed").inner_text()
    assert said.startswith("Not recorded:") and ("500" in said if failure == "500" else "reached" in said)
    assert page.locator("#review-live").inner_text() == said
    assert row.locator('input[name="reason"]').input_value() == "unreadable indeed"
    assert not RatingReview.objects.exists()
