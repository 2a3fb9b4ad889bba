"""The rating page's keyboard and history in a real browser (Debian's chromium, Playwright).

Found by an exploratory review (ninth session), each failed before: Enter on a focused link submitted
the rating instead of following the link; a panel re-rendered with an error restarted the time on
task; Back after a submit showed the finished comparison from htmx's history cache as if it were open,
and a second judgment on it vanished without a word.
"""

from __future__ import annotations

import time

import pytest

from labelapp.models import Rating
from labelapp.services.demo import demo_seed
from tests.browser.test_rating_flow import RATING_READY, page  # noqa: F401 (the fixture)

# ruff: noqa: F811 (the tests take the imported `page` fixture as a parameter)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _rater_on_the_rating_page(pg, live_server, tmp_path, monkeypatch, *, ready=RATING_READY):
    """The demo rater signed in, the guidelines acknowledged, on the first comparison once `ready`
    shows (without JavaScript: the form itself, as rate.js never stamps the panel)."""
    monkeypatch.setattr("labelapp.services.demo.ACCOUNTS_FILE", tmp_path / "accounts.json")
    password = demo_seed().accounts["demo-rater"]
    pg.goto(f"{live_server.url}/accounts/login/")
    pg.fill("#id_username", "demo-rater")
    pg.fill("#id_password", password)
    pg.press("#id_password", "Enter")
    pg.wait_for_url(f"{live_server.url}/")
    pg.goto(f"{live_server.url}/rate/")
    pg.wait_for_url("**/guidelines/")
    pg.click("#acknowledge")
    pg.wait_for_selector(ready)


def _next_panel(pg, after: str) -> None:
    pg.wait_for_function(
        "id => { const r = document.getElementById('rate-root'); return r && r.dataset.assignment !== id; }",
        arg=after,
    )


def test_enter_on_a_focused_link_follows_it_and_stores_nothing(
    page,
    live_server,
    tmp_path,
    monkeypatch,
):
    _rater_on_the_rating_page(page, live_server, tmp_path, monkeypatch)
    page.keyboard.press("4")
    page.locator('a[href="/me/quality/"]').focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/me/quality/")
    assert not Rating.objects.exists()


def test_time_on_task_survives_an_error_and_back_after_a_submit_reloads(
    page,
    live_server,
    tmp_path,
    monkeypatch,
):
    _rater_on_the_rating_page(page, live_server, tmp_path, monkeypatch)
    first = page.locator("#rate-root").get_attribute("data-assignment")
    started = time.monotonic()
    time.sleep(1.5)
    page.click("#submit-rating")  # no choice: the panel comes back with an error
    page.wait_for_selector('#rate-root .errors[role="alert"]')
    time.sleep(1.0)
    page.keyboard.press("4")  # a tie: never asks the length question
    page.keyboard.press("Enter")
    _next_panel(page, first)
    rating = Rating.objects.get()
    assert rating.time_on_task_ms >= 2400, rating.time_on_task_ms  # the clock did not restart
    assert rating.time_on_task_ms <= (time.monotonic() - started) * 1000 + 500

    page.go_back()  # the finished comparison's URL: fetched again, not restored from a cache
    page.wait_for_selector("text=That comparison is finished")
    assert page.locator("#rate-root").get_attribute("data-assignment") != first
    assert Rating.objects.count() == 1 and Rating.objects.get().preference == 0


def test_an_error_goes_away_once_its_question_is_answered(page, live_server, tmp_path, monkeypatch):
    _rater_on_the_rating_page(page, live_server, tmp_path, monkeypatch)
    page.click("#submit-rating")  # no choice: "choose one of the seven options"
    page.wait_for_selector('fieldset.scale .errors[role="alert"]')
    page.keyboard.press("4")
    assert page.locator("fieldset.scale .errors").count() == 0
