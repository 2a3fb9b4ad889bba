"""The quality dashboard in a real browser: Plotly draws every chart from our own static files, and
the page asks no other host for anything. Saves a screenshot under test-output/browser/."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from labelapp.services import quality
from tests.browser.test_rating_flow import OUTPUT_DIR, page  # noqa: F401 (the page fixture)
from tests.labelapp.test_quality import _gold, _ordinary, rate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_charts_are_drawn_by_local_plotly(page, live_server, make_user, guideline, make_comparison):  # noqa: F811
    staff = make_user("boss", staff=True, password="pw-for-tests-123")
    staff.is_superuser = True  # every page below opens
    staff.save()
    raters = [make_user(f"r{i}") for i in range(3)]
    for i in range(20):  # gold pairs, and ordinary ones (what the length and position charts read)
        c = _gold(make_comparison, i) if i < 10 else _ordinary(make_comparison, i)
        for j, r in enumerate(raters):
            rate(
                rater=r,
                comparison=c,
                preference=(-2 if (i + j) % 3 else 2),
                a_left=i % 2 == 0,
                guideline=guideline,
            )
    quality.quality_refresh()

    requested, refused = [], []
    page.on("request", lambda req: requested.append(req.url))
    # anything the Content-Security-Policy stopped is said on the console
    page.on(
        "console", lambda msg: refused.append(msg.text) if "Content Security Policy" in msg.text else None
    )
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", staff.username)
    page.fill("#id_password", "pw-for-tests-123")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/quality/")
    for chart in ("chart-longer", "chart-position", "chart-by-version", "chart-speed"):
        page.wait_for_selector(f"#{chart} .main-svg")
    # each chart's numbers in a folded table under it (a screen reader read a picture with a title)
    for chart in ("chart-longer", "chart-position", "chart-by-version", "chart-speed"):
        assert (
            page.locator(f"#{chart} + details.chart-data summary")
            .inner_text()
            .startswith("Data of this chart")
        )
    longer = page.locator("#chart-longer + details.chart-data")
    longer.locator("summary").click()
    first_table = longer.locator("table").first
    assert first_table.is_visible() and first_table.locator("tr").count() >= 2
    assert any(ch.isdigit() for ch in first_table.locator("td").first.inner_text())
    # no "Share chart..." button: plotly.js 4 shows one that uploads the chart to Plotly's cloud
    page.hover("#chart-longer .main-svg")
    page.wait_for_selector("#chart-longer .modebar-btn")
    assert page.locator('.modebar-btn[data-title="Share chart..."]').count() == 0
    page.evaluate("() => document.dispatchEvent(new Event('htmx:afterSettle'))")  # drawn again: one table
    assert page.locator("#chart-longer + details.chart-data + details.chart-data").count() == 0
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT_DIR / "quality_dashboard.png"), full_page=True)
    own_host = urlsplit(live_server.url).netloc
    assert requested and all(urlsplit(u).netloc == own_host for u in requested if not u.startswith("data:"))
    assert any(u.endswith("/static/plotly/plotly.min.js") for u in requested)
    # the policy stops nothing the app's own pages need: the API docs, the admin, the guideline editor
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock")
    for path in ("/admin/", "/admin/labelapp/comparison/", "/staff/guidelines/edit/", "/training/", "/rate/"):
        assert page.goto(f"{live_server.url}{path}").ok, path
    assert refused == []
