"""The rating page for keyboard and screen-reader users, in a real browser (an accessibility audit,
session 32; each failed before): focus went back to the top of the page after every htmx swap with
nothing said; an error named no field; the help overlay let Tab wander behind it and had no way to turn
the one-key shortcuts off."""

from __future__ import annotations

import pytest

from labelapp.models import Rating
from tests.browser.test_rating_flow import page  # noqa: F401 (the fixture)
from tests.browser.test_rating_page_keys import _next_panel, _rater_on_the_rating_page

# ruff: noqa: F811 (the tests take the imported `page` fixture as a parameter)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

_FOCUSED = "() => document.activeElement && document.activeElement.id"


def test_focus_moves_to_the_new_panel_or_the_field_in_error_and_the_change_is_said(
    page, live_server, tmp_path, monkeypatch
):
    _rater_on_the_rating_page(page, live_server, tmp_path, monkeypatch)
    first = page.locator("#rate-root").get_attribute("data-assignment")
    page.click("#submit-rating")  # no choice: the panel comes back with an error
    page.wait_for_selector('#rate-root .errors[role="alert"]')
    # the question, not its first option (Space or an arrow key there chose an answer)
    assert page.evaluate("() => document.activeElement.classList.contains('scale')")
    page.keyboard.press("Space")
    assert page.evaluate("() => document.querySelectorAll('input[name=preference]:checked').length") == 0
    assert page.locator("fieldset.scale").get_attribute("aria-describedby") == "preference-error"
    page.wait_for_function("() => document.getElementById('rate-live').textContent.length > 0")
    page.keyboard.press("4")
    # answered: no stale "invalid" and no pointer to the removed error
    assert page.locator("fieldset.scale").get_attribute("aria-describedby") is None
    assert page.locator("input[name=preference][aria-invalid]").count() == 0
    page.keyboard.press("Enter")
    _next_panel(page, first)
    assert Rating.objects.count() == 1
    assert page.evaluate(_FOCUSED) == "rate-heading"  # not the body, not the navigation's first link
    page.wait_for_function("() => document.getElementById('rate-live').textContent.includes('Comparison')")


def test_the_help_is_a_modal_dialog_and_the_one_key_shortcuts_can_be_turned_off(
    page, live_server, tmp_path, monkeypatch
):
    _rater_on_the_rating_page(page, live_server, tmp_path, monkeypatch)
    page.locator("#submit-rating").focus()
    page.keyboard.press("?")
    assert page.evaluate(_FOCUSED) == "help-card"
    page.keyboard.press("Shift+Tab")  # from the dialog itself, backwards: still inside
    assert page.evaluate("() => document.getElementById('help').contains(document.activeElement)")
    for _ in range(3):  # Tab stays inside the dialog
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.getElementById('help').contains(document.activeElement)")
    page.check("#shortcuts-off")
    page.keyboard.press("Escape")
    assert page.evaluate(_FOCUSED) == "submit-rating"  # back where it was opened from
    page.locator("#rate-heading").focus()
    page.keyboard.press("4")
    page.keyboard.press("b")
    assert page.evaluate("() => document.querySelectorAll('input[name=preference]:checked').length") == 0
    assert not page.is_checked('input[name="both_bad"]')
    page.click("#help-toggle")
    page.uncheck("#shortcuts-off")
    page.click("#help-close")
    page.locator("#rate-heading").focus()
    page.keyboard.press("4")
    assert page.evaluate("() => document.querySelectorAll('input[name=preference]:checked').length") == 1
