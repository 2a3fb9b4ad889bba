"""Quality pages: staff see everything, a rater only their own figures; no CDN, no live HTML from names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.cache import cache
from django.urls import reverse

from labelapp.services import quality
from tests.labelapp.test_quality import _gold, _ordinary, rate

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def rated(rater, other_rater, guideline, make_comparison):
    for i in range(12):
        c = _gold(make_comparison, i)
        rate(rater=rater, comparison=c, preference=-2, a_left=i % 2 == 0, guideline=guideline)
        rate(rater=other_rater, comparison=c, preference=3, a_left=True, ms=300, guideline=guideline)
        own = _ordinary(make_comparison, i)  # length and position bias are read from these
        rate(rater=rater, comparison=own, preference=-2, a_left=i % 2 == 0, guideline=guideline)
        rate(rater=other_rater, comparison=own, preference=3, a_left=True, ms=300, guideline=guideline)
    quality.quality_refresh()


def test_staff_see_the_dashboard_table_charts_and_csv(client, staff, rated, guideline):
    client.force_login(staff)
    page = client.get(reverse("quality_dashboard")).content.decode()
    assert 'id="raters"' in page and ">other_rater<" in page
    for chart in ("chart-longer", "chart-position", "chart-by-version", "chart-speed"):
        assert f'id="{chart}-spec" type="application/json"' in page, chart
    assert "plotly/plotly.min.js" in page
    assert 'id="kappa-pairs"' in page and "rater · other_rater" in page

    sorted_page = client.get(reverse("quality_dashboard"), {"sort": "gold_accuracy", "dir": "desc"})
    body = sorted_page.content.decode()
    assert body.index(">rater<") < body.index(">other_rater<")  # gold 0.5 before 0.0

    filtered = client.get(reverse("quality_dashboard"), {"version": guideline.number})
    assert (
        filtered.status_code == 200 and f"under guidelines v{guideline.number}" in filtered.content.decode()
    )
    # that version's trust, which is not the stored weight training uses: the header says so
    assert f"trust (v{guideline.number} only)" in filtered.content.decode()
    assert "only)" not in page

    csv = client.get(reverse("quality_raters_csv")).content.decode().splitlines()
    assert csv[0].startswith("rater,n,p_longer,p_longer_lo")
    assert len(csv) == 3 and any(line.startswith("other_rater,24,") for line in csv)


def test_bad_filter_and_sort_values_are_handled(client, staff, rated):
    client.force_login(staff)
    assert client.get(reverse("quality_dashboard"), {"version": "abc"}).status_code == 404
    assert client.get(reverse("quality_dashboard"), {"version": "999"}).status_code == 404
    # str.isdigit() accepts these but int() does not: they were 500s on the page and the CSV.
    for raw in ("\u00b2", "9" * 5000, "9" * 4000):
        assert client.get(reverse("quality_dashboard"), {"version": raw}).status_code == 404
        assert client.get(reverse("quality_raters_csv"), {"version": raw}).status_code == 404
    assert client.get(reverse("quality_dashboard"), {"sort": "<script>", "dir": "x"}).status_code == 200


def test_the_dashboard_says_when_nothing_was_computed_yet(client, staff):
    client.force_login(staff)
    page = client.get(reverse("quality_dashboard")).content.decode()
    assert 'id="no-report"' in page
    assert "has not run." in page


def test_a_version_published_after_the_last_refresh_is_not_said_to_lack_a_run(client, staff, rated, settings):
    from labelapp.services.guidelines import guideline_create

    newer = guideline_create(text="# v2\n\nNewer.", publish=True)
    client.force_login(staff)
    page = client.get(reverse("quality_dashboard"), {"version": newer.number}).content.decode()
    assert f"No figures for v{newer.number} yet: the quality job has not run since it was published" in page
    settings.QUALITY = {**settings.QUALITY, "MIN_LENGTH_RATIO": 1.5}
    page = client.get(reverse("quality_dashboard")).content.decode()
    assert "≥ 1.5× longer" in page and "1.2×" not in page


def test_raters_cannot_see_staff_pages_or_other_raters(client, rater, other_rater, rated):
    client.force_login(rater)
    assert client.get(reverse("quality_dashboard")).status_code == 403
    assert client.get(reverse("quality_raters_csv")).status_code == 403
    assert client.get(reverse("quality_rater", args=[other_rater.pk])).status_code == 403
    assert client.get(reverse("quality_rater", args=[rater.pk])).status_code == 403
    assert client.post(reverse("quality_refresh")).status_code == 403


def test_anonymous_users_are_sent_to_log_in(client, rated):
    response = client.get(reverse("quality_me"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client.get(reverse("quality_dashboard")).status_code == 302


def test_a_rater_sees_their_own_figures_only(settings, client, rater, other_rater, rated):
    settings.LABEL = {**settings.LABEL, "GOLD_FEEDBACK": True}  # the gold cell tells whose figures these are
    client.force_login(other_rater)
    page = client.get(reverse("quality_me")).content.decode()
    assert "Your figures" in page and 'id="gold"' in page
    assert 'id="gold">0.00 <span class="ci">[0.00, 0.24]' in page  # gold 0/12 with its Wilson interval
    assert ">rater<" not in page and "Trust weight" not in page
    # the page takes no parameter that names another rater
    other = client.get(reverse("quality_me"), {"rater": rater.pk}).content.decode()
    assert 'id="gold">0.00 <span class="ci">[0.00, 0.24]' in other and ">rater<" not in other


@pytest.mark.parametrize("feedback", [False, True])
def test_a_rater_sees_their_gold_accuracy_only_with_gold_feedback_on(
    settings, client, staff, rater, rated, feedback
):
    # Its n, compared across refreshes with their own list of ratings, says which recent pairs were
    # gold: shown to the rater only when GOLD_FEEDBACK already tells them after each gold pair.
    settings.LABEL = {**settings.LABEL, "GOLD_FEEDBACK": feedback}
    client.force_login(rater)
    own = client.get(reverse("quality_me")).content.decode()
    assert "Your figures" in own and 'id="left"' in own
    cell = re.search(r'<td id="gold">(.*?)</td>', own, re.S)
    assert (cell is not None) is feedback and ("Gold accuracy" in own) is feedback
    assert cell is None or "n=12" in cell.group(1)
    client.force_login(staff)
    theirs = client.get(reverse("quality_rater", args=[rater.pk])).content.decode()
    assert 'id="gold">1.00 <span class="ci">[0.76, 1.00]</span> <span class="n">n=12' in theirs


@pytest.mark.parametrize("feedback", [False, True])
def test_a_raters_own_page_shows_no_count_that_leaves_gold_out(settings, client, rater, rated, feedback):
    # 24 judgments, 12 of them gold: "From 24 judgments" beside the length and position figures' n=12
    # (ordinary pairs only), or the chart's n=12, tells the rater how many were gold; compared across
    # refreshes with their own list of ratings, which ones.
    settings.LABEL = {**settings.LABEL, "GOLD_FEEDBACK": feedback}
    client.force_login(rater)
    own = client.get(reverse("quality_me")).content.decode()
    assert "From 24 judgments" in own and 'id="left">' in own
    cells = re.search(r'<td id="left">(.*?)</td>', own, re.S).group(1)
    assert ('class="n"' in cells) is feedback and ("n=12" in own) is feedback
    # the value stays; an interval goes with its count (a Wilson interval and its value give the count)
    assert bool(re.search(r'<td id="left">0\.50 <span class="ci">\[', own)) is feedback
    assert re.search(r'<td id="left">0\.50', own)
    assert 'id="chart-rater-longer-spec"' in own
    assert ("(n=" in own) is feedback  # the chart's legend and hover counts
    spec = json.loads(re.search(r'id="chart-rater-longer-spec"[^>]*>(.*?)</script>', own, re.S).group(1))
    assert ("error_y" in spec["data"][0]) is feedback
    assert ("Brackets: 95% interval" in own) is feedback


def test_a_gold_judgment_moves_a_raters_own_figures_as_any_other_does(
    settings, client, rater, rated, guideline, make_comparison
):
    # with feedback off the own page showed the length and position figures of ordinary pairs only: a
    # gold judgment left them as they were, any other moved them, so a rater comparing the page across
    # refreshes learnt which of their pairs had been gold
    def left_shown() -> str:
        page = client.get(reverse("quality_me")).content.decode()
        return re.search(r'<td id="left">([0-9.]+)', page).group(1)

    client.force_login(rater)
    assert left_shown() == "0.50"
    rate(rater=rater, comparison=_gold(make_comparison, 99), preference=-2, a_left=True, guideline=guideline)
    quality.quality_refresh()
    assert left_shown() == "0.52"  # 13 of 25 judgments went to the left answer
    staff_view = quality.quality_compute(quality.quality_rows())["raters"]
    assert next(r for r in staff_view if r["rater_id"] == rater.pk)["p_left"]["value"] == 0.5  # ordinary only
    settings.LABEL = {**settings.LABEL, "GOLD_FEEDBACK": True}
    assert left_shown() == "0.50"  # with feedback the rater sees what staff see (and their gold accuracy)


def test_a_rater_without_figures_yet(client, make_user):
    client.force_login(make_user("newcomer"))
    assert 'id="no-figures"' in client.get(reverse("quality_me")).content.decode()


def test_staff_see_one_raters_figures(client, staff, rater, rated):
    client.force_login(staff)
    page = client.get(reverse("quality_rater", args=[rater.pk])).content.decode()
    assert "Trust weight" in page and 'id="chart-rater-longer-spec"' in page
    assert client.get(reverse("quality_rater", args=[99999])).status_code == 404


def test_a_hostile_username_is_inert_in_table_charts_and_csv(
    client, staff, make_user, guideline, make_comparison
):
    evil = make_user("=cmd|<script>alert(1)</script>")
    rate(rater=evil, comparison=_gold(make_comparison, 0), preference=-1, guideline=guideline)
    quality.quality_refresh()
    client.force_login(staff)
    page = client.get(reverse("quality_dashboard")).content.decode()
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)" in page
    csv = client.get(reverse("quality_raters_csv")).content.decode()
    assert "\n'=cmd|" in csv  # not a spreadsheet formula


def test_no_template_loads_anything_from_another_host():
    external = re.compile(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", re.I)
    offenders = []
    for path in Path(settings.BASE_DIR, "templates").rglob("*.html"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if external.search(line) or "cdn." in line.lower():
                offenders.append(f"{path}:{n}: {line.strip()}")
    assert offenders == []


def test_plotly_js_is_served_from_the_installed_package():
    found = finders.find("plotly/plotly.min.js")
    assert found and Path(found).stat().st_size > 1_000_000
    assert "plotly" in Path(found).parts[-3:][0] or "package_data" in found


def test_a_missing_static_file_is_not_found_not_a_match():
    # the plotly finder answered None, which Django's find() took for a match ([None]): every missing
    # static file was a 500 under DEBUG (make run)
    assert finders.find("nope/missing.js") is None
    assert finders.find("nope/missing.js", find_all=True) == []


def test_charts_and_the_sorted_column_are_named_for_screen_readers(client, staff, rated):
    # a chart was an unnamed div and the sort arrow was read as "black up-pointing triangle"
    client.force_login(staff)
    page = client.get(reverse("quality_dashboard"), {"sort": "p_left", "dir": "desc"}).content.decode()
    assert 'role="img" aria-label="Chart: ' in page
    assert 'aria-sort="descending"' in page and '<span aria-hidden="true">▼</span>' in page
