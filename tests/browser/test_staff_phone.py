"""Staff pages on a phone (390x844, Debian's chromium driven by Playwright): every link and table
reachable without scrolling the page sideways, and the quality charts readable.

Found by a browser audit: the top links ran off screen ("Log out" at x 814 in a 390 px window), the
runs table was 854 px wide, and the length chart's legend, on the right, left its plot 20 px wide.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from labelapp.models import Rating, TrainingRun
from labelapp.services.guidelines import guideline_create, guideline_publish_text
from labelapp.services.quality import quality_refresh
from labelapp.services.roles import ROLES, ensure_roles
from tests.browser.test_guidelines_and_panels import PASSWORD, _page, browser  # noqa: F401 (fixture)
from tests.labelapp.export_helpers import make_pair, rate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTH = 390
PAGES = ("/", "/training/", "/policy/", "/staff/guidelines/", "/staff/review/", "/quality/")


def _staff_with_every_role():
    ensure_roles()  # the live server's transactional tests flush the groups migrate made
    user = get_user_model().objects.create_user(username="phone-staff", password=PASSWORD, is_staff=True)
    user.groups.add(*Group.objects.filter(name__in=ROLES))
    return user


def _data(staff) -> None:
    v1 = guideline_create(text="# Guidelines\n\nBe concise.", publish=True)
    guideline_publish_text(
        text="# Guidelines\n\nBe concise and correct.", changelog="a longer change message " * 3, author=staff
    )
    users = get_user_model().objects
    raters = [users.create_user(username=f"rater-with-a-long-name-{i:02d}") for i in range(14)]
    for i in range(8):
        c = make_pair(text=f"Question {i}?", a="Short.", b="A much longer answer that says more " * 4)
        for j, r in enumerate(raters):
            rate(rater=r, comparison=c, preference=2 if (i + j) % 3 else -2, guideline=v1)
    Rating.objects.filter(pk=Rating.objects.first().pk).update(flag_pii=True)  # a row on the review page
    for status in ("succeeded", "failed", "queued"):
        TrainingRun.objects.create(status=status, error="boom " * 30 if status == "failed" else "")
    quality_refresh()


def test_staff_pages_fit_a_phone_and_the_charts_keep_their_plot(browser, live_server):  # noqa: F811
    staff = _staff_with_every_role()
    _data(staff)
    page = _page(browser, live_server, "phone-staff", width=WIDTH, height=844)
    for url in PAGES:
        page.goto(live_server.url + url)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH, url
        logout = page.get_by_role("button", name="Log out").bounding_box()
        assert logout["x"] + logout["width"] <= WIDTH, url
    page.goto(live_server.url + "/quality/")
    page.wait_for_function("document.querySelector('.plotly-chart')?._fullLayout !== undefined")
    plot = page.evaluate("document.querySelector('.plotly-chart')._fullLayout._size.w")
    assert plot >= 250, plot  # the legend sits under the plot, not beside it


def test_rater_pages_fit_a_phone(browser, live_server):  # noqa: F811
    from labelapp.services.guidelines import guideline_acknowledge

    v1 = guideline_create(
        text="# Guidelines\n\n| rule | example |\n|---|---|\n| be brief | " + "x " * 80 + "|", publish=True
    )
    rater = get_user_model().objects.create_user(username="phone-rater", password=PASSWORD)
    guideline_acknowledge(rater=rater, version=v1)
    make_pair(text="Why is the sky blue? " * 5, a="Rayleigh scattering.", b="```\n" + "y" * 300 + "\n```")
    page = _page(browser, live_server, "phone-rater", width=WIDTH, height=844)
    for url in ("/", "/guidelines/", "/rate/"):
        page.goto(live_server.url + url)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH, url
    submit = page.get_by_role("button", name="Submit").bounding_box()
    assert submit["x"] >= 0 and submit["x"] + submit["width"] <= WIDTH
