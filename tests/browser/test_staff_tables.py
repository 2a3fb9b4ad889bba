"""Staff tables in a real browser (Debian's chromium, Playwright) at 1366x900.

One long text in a table (a change message, a run's error) let the browser shrink every other column
to a letter or two ("pu|blis|hed", a date over four lines), because the cards break words anywhere.
Headings, statuses, dates and figures now stay whole, and a long unbroken word still does not widen
the page.
"""

from __future__ import annotations

import pytest
from django.db import connections

from labelapp.models import TrainingRun
from labelapp.services.guidelines import guideline_create
from tests.browser.test_guidelines_and_panels import _page, _user, browser  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# ruff: noqa: F811 (the test takes the imported `browser` fixture as a parameter)

# Cells holding one short word (a heading, a status, a figure, a date part) that wrap onto several lines.
BROKEN_WORDS = """() => {
  const broken = [];
  for (const cell of document.querySelectorAll('.card table th, .card table td')) {
    if (cell.matches('.text, .err')) continue;
    for (const node of cell.childNodes) {
      const text = (node.textContent || '').trim();
      if (!text || /\\s/.test(text) || text.length > 24) continue;
      const range = document.createRange();
      range.selectNodeContents(node);
      const lines = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
      if (lines.size > 1) broken.push(text);
    }
  }
  return broken;
}"""


def test_long_texts_in_staff_tables_break_no_other_word_nor_widen_the_page(browser, live_server):
    _user("browser-staff", staff=True)
    guideline_create(text="# Rules\n\nBe concise.", changelog="First version.", publish=True)
    guideline_create(
        text="# Rules\n\nBe concise and kind.",
        changelog="Added a kindness rule, " + "explained at length " * 10 + "x" * 250,
        publish=True,
    )
    TrainingRun.objects.create(
        status=TrainingRun.Status.FAILED,
        error="CUDA out of memory. Tried to allocate 2.00 GiB " * 3 + "y" * 400,
    )
    page = _page(browser, live_server, "browser-staff")
    try:
        for path in ("/staff/guidelines/", "/training/"):
            page.goto(f"{live_server.url}{path}")
            assert page.evaluate(BROKEN_WORDS) == [], path
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
    finally:
        page.context.close()
        connections.close_all()  # the greenlet's own connection (see tests/browser/test_rating_flow.py)


@pytest.mark.parametrize("page_path, link", [("/training/", "run-link"), ("/policy/", "round-link")])
def test_a_polling_runs_table_leaves_the_keyboard_focus_where_it_was(browser, live_server, page_path, link):
    # each poll swapped the table in anew and the focus fell to the page body (every 2 to 3 s)
    kind = "reward_model" if page_path == "/training/" else "ppo"
    run = TrainingRun.objects.create(status="queued", kind=kind)
    _user("poll-staff", staff=True)
    page = _page(browser, live_server, "poll-staff")
    page.goto(f"{live_server.url}{page_path}")
    page.locator(f"#{link}-{run.pk}").focus()
    page.wait_for_timeout(4000)  # past a poll
    assert page.evaluate("() => document.activeElement.id") == f"{link}-{run.pk}"
