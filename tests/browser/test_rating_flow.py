"""A rater in a real browser (Debian's chromium driven by Playwright), keyboard only.

Logs in as the demo rater, acknowledges the guidelines, judges three comparisons with the keyboard,
and checks the three Rating rows. Saves a screenshot of the rating page under test-output/.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.db import connections

from labelapp.models import Assignment, GuidelineVersion, Rating
from labelapp.services.demo import demo_seed

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OUTPUT_DIR = Path(__file__).resolve().parents[2] / "test-output" / "browser"
# The rating form with rate.js running (it stamps the panel's start time as it starts): keys pressed
# before the deferred script ran were lost, and the next panel never came (a flaky timeout under load).
RATING_READY = "#rate-root[data-started] #rating-form"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _chromium() -> str | None:
    for candidate in (
        os.environ.get("CHROMIUM_PATH"),
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        shutil.which("chromium"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture
def page(live_server, monkeypatch):
    yield from chromium_page(monkeypatch, viewport={"width": 1400, "height": 1000})


def chromium_page(monkeypatch, **context_options):
    """A page in Debian's chromium (a fixture's body: yields it, closes everything after); the test is
    skipped when chromium is not installed. `context_options` go to Playwright's new_context."""
    path = _chromium()
    if path is None:
        pytest.skip("Debian's chromium is not installed (make browser-deps installs it)")
    # Playwright's sync API runs an event loop; Django refuses sync DB calls inside one unless told.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(**context_options)
        pg = context.new_page()
        pg.set_default_timeout(15_000)
        try:
            yield pg
        finally:
            context.close()
            browser.close()
            # Playwright's sync API runs the test inside a greenlet with its own context, so Django's
            # connection handler opened a second connection there that teardown never sees; left
            # open it keeps the test database busy and `make test` cannot drop it. Close it here.
            connections.close_all()


def test_a_rater_judges_three_comparisons_with_the_keyboard(page, live_server, tmp_path, monkeypatch):
    monkeypatch.setattr("labelapp.services.demo.ACCOUNTS_FILE", tmp_path / "accounts.json")
    demo = demo_seed()
    password = demo.accounts["demo-rater"]
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)

    page.goto(f"{live_server.url}/accounts/login/")
    page.locator("#id_username").focus()
    page.keyboard.type("demo-rater")
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/")

    page.goto(f"{live_server.url}/rate/")
    page.wait_for_url("**/guidelines/")  # must acknowledge before the first comparison
    page.locator("#acknowledge").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(RATING_READY)

    keys = ["1", "4", "7"]
    for i, key in enumerate(keys):
        assignment_id = page.locator("#rate-root").get_attribute("data-assignment")
        if i == 0:
            page.screenshot(path=str(OUTPUT_DIR / "rating_page.png"), full_page=True)
        page.keyboard.press(key)
        assert page.locator(f'input[name="preference"][data-key="{key}"]').is_checked()
        if page.locator("#length-check").is_visible():
            page.keyboard.press("n")  # the extra length adds nothing
        page.keyboard.press("Enter")
        # htmx swaps in the next comparison (or the "nothing to rate" panel) in place.
        page.wait_for_function(
            "id => { const r = document.getElementById('rate-root');"
            " return r && r.dataset.assignment !== id; }",
            arg=assignment_id,
        )

    version = GuidelineVersion.objects.get(number=demo.guideline_number)
    ratings = list(
        Rating.objects.filter(rater__username="demo-rater").select_related("assignment").order_by("id")
    )
    assert len(ratings) == 3
    for key, rating in zip(keys, ratings, strict=True):
        assert rating.guideline_version_id == version.pk
        assert rating.assignment.shown_left in {Assignment.Side.A, Assignment.Side.B}
        assert rating.assignment.status == Assignment.Status.DONE
        assert rating.time_on_task_ms > 0
        # Key 1 = left much better: stored relative to A/B according to the shown order.
        left_sign = 1 if rating.assignment.shown_left == Assignment.Side.A else -1
        assert rating.preference == (int(key) - 4) * left_sign
    assert (OUTPUT_DIR / "rating_page.png").stat().st_size > 10_000


def _sign_in_and_acknowledge(page, live_server, tmp_path, monkeypatch) -> None:
    """The demo rater signed in, the guidelines acknowledged, the first comparison on screen."""
    monkeypatch.setattr("labelapp.services.demo.ACCOUNTS_FILE", tmp_path / "accounts.json")
    demo = demo_seed()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "demo-rater")
    page.fill("#id_password", demo.accounts["demo-rater"])
    page.locator("#id_password").press("Enter")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/rate/")
    page.wait_for_url("**/guidelines/")
    page.locator("#acknowledge").click()
    page.wait_for_selector(RATING_READY)


def test_a_message_from_a_page_load_goes_with_the_next_swapped_in_panel(
    page, live_server, tmp_path, monkeypatch
):
    # "That comparison is finished; here is your next one." (or "Nothing was saved") stayed above every
    # later panel: base.html draws messages outside #rate-root, which is all htmx replaces
    _sign_in_and_acknowledge(page, live_server, tmp_path, monkeypatch)

    def rate_once():
        page.wait_for_selector(RATING_READY)
        before = page.locator("#rate-root").get_attribute("data-assignment")
        page.keyboard.press("4")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "id => { const r = document.getElementById('rate-root');"
            " return r && r.dataset.assignment !== id; }",
            arg=before,
        )
        return before

    finished = rate_once()
    page.goto(f"{live_server.url}/rate/{finished}/")  # Back to a finished one: redirected, with a message
    assert "That comparison is finished" in page.locator("ul.messages").inner_text()
    rate_once()
    assert page.locator("ul.messages").count() == 0


def test_typing_a_skip_reason_after_a_skip_error_goes_into_the_reason(
    page, live_server, tmp_path, monkeypatch
):
    # After "Say why you skip." the focus was on the page: typing "bias 3" ticked "both bad" (b), hid
    # the skip form (s) and chose a preference (3), while the reason field kept its blank value.
    _sign_in_and_acknowledge(page, live_server, tmp_path, monkeypatch)
    assignment_id = int(page.locator("#rate-root").get_attribute("data-assignment"))

    page.keyboard.press("s")
    page.locator("#skip-reason").fill("")
    page.locator("#skip-reason").press("Enter")
    page.wait_for_selector('#skip-form .errors[role="alert"]')
    page.keyboard.type("bias 3")

    assert page.locator("#skip-reason").input_value() == "bias 3"
    assert page.locator("#skip-form").is_visible()
    assert not page.locator('input[name="both_bad"]').is_checked()
    assert page.locator('input[name="preference"]:checked').count() == 0
    page.locator("#skip-reason").press("Enter")
    page.wait_for_function(
        "id => { const r = document.getElementById('rate-root'); return r && r.dataset.assignment !== id; }",
        arg=str(assignment_id),
    )
    skipped = Assignment.objects.get(pk=assignment_id)
    assert skipped.status == Assignment.Status.SKIPPED and skipped.skip_reason == "bias 3"
