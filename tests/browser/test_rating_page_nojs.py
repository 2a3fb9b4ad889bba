"""The rating page without JavaScript, in a real browser on a 1366x900 window (a UI audit, session 34;
each failed before): a template comment showed as text above every comparison; the skip form stayed
hidden (the stylesheet's `[hidden] {display: none !important}` beat the page's <noscript> rule), so a
rater could not skip; a refused submit reloaded the page at its top, the error below the answers, and
the page looked unchanged."""

from __future__ import annotations

import pytest

from labelapp.models import Assignment, Rating
from tests.browser.test_rating_flow import chromium_page
from tests.browser.test_rating_page_keys import _rater_on_the_rating_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

_IN_VIEW = """sel => { const r = document.querySelector(sel).getBoundingClientRect();
                      return r.top >= 0 && r.bottom <= window.innerHeight; }"""


@pytest.fixture
def nojs_page(live_server, monkeypatch):
    yield from chromium_page(monkeypatch, viewport={"width": 1366, "height": 900}, java_script_enabled=False)


def test_without_javascript_no_template_text_shows_and_the_skip_form_is_open(
    nojs_page, live_server, tmp_path, monkeypatch
):
    _rater_on_the_rating_page(nojs_page, live_server, tmp_path, monkeypatch, ready="#rating-form")
    shown = nojs_page.inner_text("body")
    assert "{#" not in shown and "#}" not in shown and "{%" not in shown
    assert nojs_page.is_visible("#skip-form") and nojs_page.is_visible("#skip-reason")
    first = nojs_page.locator("#rate-root").get_attribute("data-assignment")
    nojs_page.click("#skip-form button[type=submit]")  # the reason typed in by default
    nojs_page.wait_for_selector(f"#rate-root:not([data-assignment='{first}'])")
    assert Assignment.objects.get(pk=first).status == Assignment.Status.SKIPPED


def test_without_javascript_a_refused_submit_puts_its_error_in_view(
    nojs_page, live_server, tmp_path, monkeypatch
):
    _rater_on_the_rating_page(nojs_page, live_server, tmp_path, monkeypatch, ready="#rating-form")
    nojs_page.click("#submit-rating")  # no choice made
    nojs_page.wait_for_selector("#preference-error")
    nojs_page.wait_for_function(
        "() => document.activeElement.id === 'error-summary'"
    )  # autofocus, once parsed
    assert nojs_page.evaluate(_IN_VIEW, "#error-summary")
    assert "Choose one of the seven options" in nojs_page.inner_text("#error-summary")
    nojs_page.click("#error-summary a[href='#rating-form']")
    for shown in ("#preference-error", "#submit-rating"):
        assert nojs_page.evaluate(_IN_VIEW, shown), shown
    assert not Rating.objects.exists()
