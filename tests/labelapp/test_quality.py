"""Quality figures from the database: trust, flags, repeats, the job, training weights, the command."""

from __future__ import annotations

import io
import json
import os
import time

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client
from django_celery_beat.models import PeriodicTask

from labelapp.models import Comparison, QualityReport, RaterProfile, Rating, RatingReview
from labelapp.services import quality, training
from labelapp.services.schedules import QUALITY_REFRESH, schedules_ensure
from tests.labelapp.export_helpers import rate as stored_rating


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def rate(*, ms: int = 20_000, **kw) -> Rating:
    """A stored judgment at a plausible reading time (20 s unless given)."""
    return stored_rating(ms=ms, **kw)


def _gold(make_comparison, i: int) -> Comparison:
    c = make_comparison(
        prompt_text=f"gold {i}", a="Short and right.", b="Long " * 30, kind=Comparison.Kind.GOLD
    )
    c.gold_preference = -1
    c.save(update_fields=["gold_preference"])
    return c


def _ordinary(make_comparison, i: int) -> Comparison:
    """An ordinary comparison (what length and position bias are measured on), A short, B long."""
    return make_comparison(prompt_text=f"ordinary {i}", a="Short and right.", b="Long " * 30)


def _swapped_repeat(original: Comparison) -> Comparison:
    """A repeat of `original` that shows its answers the other way round."""
    return Comparison.objects.create(
        prompt=original.prompt,
        response_a=original.response_b,
        response_b=original.response_a,
        kind=Comparison.Kind.REPEAT,
        repeat_of=original,
    )


@pytest.mark.django_db
def test_refresh_stores_trust_flags_and_reports(rater, other_rater, guideline, make_comparison):
    # rater: right on 20 gold pairs, always picks the left answer (alternating sides -> position flag).
    # other_rater: wrong on every gold pair (picks the padded longer answer) -> gold flag, low trust.
    # Bias is read from ordinary comparisons (one set per rater, so there is no agreement to measure:
    # gold does not count as agreement): rater picks the left one there too, other_rater the longer one.
    for i in range(20):
        c = _gold(make_comparison, i)
        a_left = i % 2 == 0
        rate(rater=rater, comparison=c, preference=-2 if a_left else 2, a_left=a_left, guideline=guideline)
        rate(rater=other_rater, comparison=c, preference=2, a_left=True, guideline=guideline)
        mine = _ordinary(make_comparison, i)
        rate(rater=rater, comparison=mine, preference=-2 if a_left else 2, a_left=a_left, guideline=guideline)
        theirs = _ordinary(make_comparison, 100 + i)
        rate(rater=other_rater, comparison=theirs, preference=2, a_left=True, guideline=guideline)

    ids = quality.quality_refresh()
    assert ids and QualityReport.objects.filter(pk__in=ids).count() == 2  # all versions + v1

    good = RaterProfile.objects.get(rater=rater)
    bad = RaterProfile.objects.get(rater=other_rater)
    # rater: gold 10/20 (picking the left answer is right only when A is on the left); other_rater:
    # 0/20 -> s_gold = (0 + 8) / 30 -> -0.47: trust at the floor.
    assert good.figures["gold_accuracy"]["value"] == pytest.approx(0.5)
    assert bad.figures["gold_accuracy"]["value"] == 0.0
    assert bad.trust_weight == pytest.approx(0.05)
    assert good.trust_weight > bad.trust_weight
    assert "position" in good.figures["flags"]
    assert "gold" in bad.figures["flags"] and "gold" in good.figures["flags"]
    assert good.figures["p_left"]["value"] == 1.0
    assert bad.figures["p_longer"]["value"] == 1.0
    assert good.figures["chart"]["data"]  # the rater's own chart, ready for their page

    report = QualityReport.objects.get(pk=ids[0], guideline_version=None)
    assert report.figures["pool"]["n"] == 80
    assert {r["rater"] for r in report.figures["raters"]} == {"rater", "other_rater"}
    assert set(report.charts) == {"longer", "position", "by_version", "speed"}
    assert report.figures["by_version"][0]["version"] == guideline.number


@pytest.mark.django_db
def test_excluded_ratings_do_not_count(rater, guideline, make_comparison, staff):
    c = _gold(make_comparison, 0)
    r = rate(rater=rater, comparison=c, preference=3, guideline=guideline)
    quality.quality_refresh()
    assert RaterProfile.objects.get(rater=rater).trust_weight < 1.0  # wrong on gold
    RatingReview.objects.create(
        rating=r, decision=RatingReview.Decision.EXCLUDE, reason="broken", reviewer=staff
    )
    assert len(quality.quality_rows()) == 0
    quality.quality_refresh()
    profile = RaterProfile.objects.get(rater=rater)
    assert (profile.trust_weight, profile.figures) == (1.0, {})  # nothing of theirs counts any more


@pytest.mark.django_db
def test_length_and_position_bias_leave_out_gold_and_repeats(rater, guideline, make_comparison):
    # Always the longer answer, on the left, on 10 ordinary pairs; right (the short one, on the right)
    # on 10 gold pairs, whose longer answer is padded by construction; and 10 repeats of the ordinary
    # pairs. Counting gold made this rater look half as length-biased (p_longer 0.5) and unbiased in
    # position; repeats counted each pair twice.
    for i in range(10):
        c = make_comparison(prompt_text=f"p{i}", a="Long " * 30, b="Short.")
        rate(rater=rater, comparison=c, preference=-2, a_left=True, guideline=guideline)
        repeat = _swapped_repeat(c)
        rate(rater=rater, comparison=repeat, preference=2, a_left=False, guideline=guideline)
        gold = _gold(make_comparison, i)
        rate(rater=rater, comparison=gold, preference=-2, a_left=False, guideline=guideline)
    rows = quality.quality_rows()
    row = quality.quality_compute(rows, bootstrap=0)["raters"][0]
    assert row["n"] == 30
    assert (row["p_longer"]["n"], row["p_longer"]["value"]) == (10, 1.0)
    assert (row["p_left"]["n"], row["p_left"]["value"]) == (10, 1.0)
    assert row["gold_accuracy"]["value"] == 1.0 and row["retest_agreement"]["value"] == 1.0
    assert sum(b["n"] for b in row["longer_curve"]["bins"]) == 10


@pytest.mark.django_db
def test_agreement_kappa_and_alpha_leave_out_gold_and_broken_ratings(
    rater, other_rater, guideline, make_comparison
):
    # The two raters agree on 12 gold pairs, disagree on 12 ordinary ones, and agree on 5 more that
    # other_rater flagged broken. Every rater is served the same gold, so easy gold set the pool's
    # agreement (17 of 29 pairs agreed: 0.59, where the ordinary pairs say 0) and counted twice in
    # trust; a broken-flagged judgment
    # says nothing about taste (training and the policy watch leave it out).
    for i in range(12):
        gold = _gold(make_comparison, i)
        rate(rater=rater, comparison=gold, preference=-2, guideline=guideline)
        rate(rater=other_rater, comparison=gold, preference=-2, guideline=guideline)
        c = _ordinary(make_comparison, i)
        rate(rater=rater, comparison=c, preference=-2, guideline=guideline)
        rate(rater=other_rater, comparison=c, preference=2, guideline=guideline)
    for i in range(5):
        c = _ordinary(make_comparison, 100 + i)
        rate(rater=rater, comparison=c, preference=-2, guideline=guideline)
        rate(rater=other_rater, comparison=c, preference=-2, guideline=guideline, flag_broken=True)
    report = quality.quality_compute(quality.quality_rows(), bootstrap=0)
    pool = report["pool"]
    assert (pool["agreement"]["value"], pool["agreement"]["n"]) == (0.0, 12)
    assert pool["alpha"]["n"] == 12 and pool["alpha"]["value"] < 0
    assert [(k["n"], k["value"]) for k in report["kappa_pairs"]] == [(12, 0.0)]
    other = next(r for r in report["raters"] if r["rater_id"] == other_rater.pk)
    assert (other["agreement"]["n"], other["agreement"]["value"]) == (12, 0.0)
    assert (other["p_longer"]["n"], other["p_longer"]["value"]) == (12, 1.0)  # the broken 5 are out
    assert other["gold_accuracy"]["n"] == 12  # gold accuracy still counts every gold judgment


@pytest.mark.django_db
def test_a_speed_flag_needs_a_pattern_not_one_fast_judgment(rater, guideline, make_comparison):
    def flags() -> list[str]:
        return quality.quality_compute(quality.quality_rows(), bootstrap=0)["raters"][0]["flags"]

    rate(rater=rater, comparison=_ordinary(make_comparison, 0), preference=1, guideline=guideline, ms=0)
    assert "speed" not in flags()  # 1 of 1 fast (no time): flagged before
    for i in range(1, 10):
        rate(rater=rater, comparison=_ordinary(make_comparison, i), preference=1, guideline=guideline, ms=0)
    assert "speed" in flags()  # 10 of 10


@pytest.mark.django_db
def test_repeats_give_test_retest_with_swapped_answers_flipped(rater, guideline, make_comparison):
    pairs = []
    for i in range(6):
        original = make_comparison(prompt_text=f"p{i}", a=f"answer one {i}", b=f"answer two {i} longer")
        repeat = _swapped_repeat(original)
        pairs.append((original, repeat))
    # consistent on 5 (same answer preferred: sign flips with the swap), inconsistent on 1
    for i, (original, repeat) in enumerate(pairs):
        rate(rater=rater, comparison=original, preference=-2, guideline=guideline)
        rate(rater=rater, comparison=repeat, preference=2 if i < 5 else -2, guideline=guideline)
    figures = quality.quality_compute(quality.quality_rows(), bootstrap=0)
    retest = figures["raters"][0]["retest_agreement"]
    assert (retest["n"], retest["value"]) == (6, pytest.approx(5 / 6))


@pytest.mark.django_db
def test_training_pairs_carry_the_rater_trust_weight(rater, other_rater, guideline, make_comparison):
    c1, c2 = make_comparison(prompt_text="one"), make_comparison(prompt_text="two")
    r1 = rate(rater=rater, comparison=c1, preference=-2, guideline=guideline)
    r2 = rate(rater=other_rater, comparison=c2, preference=1, guideline=guideline)
    RaterProfile.objects.create(rater=rater, trust_weight=0.3)
    pairs = {p.pair_id: p for p in training.training_pairs([r1.pk, r2.pk])}
    assert pairs[f"rating:{r1.pk}"].weight == pytest.approx(0.3)
    assert pairs[f"rating:{r2.pk}"].weight == pytest.approx(1.0)  # no profile yet: weight 1


@pytest.mark.django_db
def test_rater_metrics_json(rater, guideline, make_comparison, capsys):
    for i in range(3):
        rate(rater=rater, comparison=_gold(make_comparison, i), preference=-1, guideline=guideline)
        rate(rater=rater, comparison=_ordinary(make_comparison, i), preference=-1, guideline=guideline)
    call_command("rater_metrics", "--json")
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 1
    row = out[0]
    for key in ("rater", "n", "p_longer", "p_left", "gold_accuracy", "trust"):
        assert key in row, key
    assert (row["rater"], row["n"], row["gold_accuracy"], row["p_longer"]) == ("rater", 6, 1.0, 0.0)
    call_command("rater_metrics")  # the table prints too
    assert "rater" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no guideline version 99"):  # was a KeyError traceback
        call_command("rater_metrics", "--guideline-version", "99")


@pytest.mark.django_db(transaction=True)
def test_rater_metrics_save_says_when_another_refresh_holds_the_lock(rater, guideline, make_comparison):
    # --save stored nothing, without a word, while the beat job (or the button's task) was refreshing
    import psycopg
    from django.db import connection

    from labelapp.services.quality import _ADVISORY_LOCK

    rate(rater=rater, comparison=_ordinary(make_comparison, 0), preference=-1, guideline=guideline)
    params = connection.get_connection_params()
    other = psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}, autocommit=True)
    try:
        other.execute("SELECT pg_advisory_lock(%s)", [_ADVISORY_LOCK])
        with pytest.raises(CommandError, match="Another refresh of the quality figures is running"):
            call_command("rater_metrics", "--save", stdout=io.StringIO())
    finally:
        other.close()
    call_command("rater_metrics", "--save", stdout=io.StringIO())
    assert RaterProfile.objects.filter(rater=rater).exists()


@pytest.mark.django_db
def test_the_quality_job_is_scheduled_on_the_default_queue():
    schedules_ensure()
    task = PeriodicTask.objects.get(name=QUALITY_REFRESH)
    assert task.task == "labelapp.tasks.quality_refresh" and task.queue == "default"


@pytest.mark.django_db
def test_a_refresh_running_elsewhere_is_not_run_twice():
    from django.db import connections

    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [quality._ADVISORY_LOCK])
        assert quality.quality_refresh() is None
    finally:
        other.close()


@pytest.mark.django_db
def test_a_skipped_refresh_is_logged(caplog):
    # it returned None without a word: one hung refresh turned every later one into a silent no-op
    from django.db import connections

    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [quality._ADVISORY_LOCK])
        with caplog.at_level("INFO", logger="labelapp.services.quality"):
            assert quality.quality_refresh() is None
    finally:
        other.close()
    assert "skipped: another refresh holds the lock" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_refresh_whose_connection_broke_raises_its_own_error(monkeypatch):
    # the unlock in `finally` ran on the broken connection, and its error replaced the real one
    from django.db import connection

    def broken():
        connection.connection.close()  # the database went away mid-job
        raise RuntimeError("the error that says what went wrong")

    monkeypatch.setattr(quality, "quality_rows", broken)
    with pytest.raises(RuntimeError, match="the error that says what went wrong"):
        quality.quality_refresh()
    connection.close()


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_quality_job(rater, guideline, make_comparison, celery_worker_process):
    from labelapp.tasks import quality_refresh as task

    rate(rater=rater, comparison=_gold(make_comparison, 0), preference=-1, guideline=guideline)
    queue = f"test-quality-{os.getpid()}"
    worker = celery_worker_process(queue=queue, name=f"{queue}@%h")
    task.apply_async(queue=queue)
    deadline = time.time() + 90
    while time.time() < deadline and not RaterProfile.objects.filter(rater=rater).exists():
        time.sleep(0.3)
    profile = RaterProfile.objects.filter(rater=rater).first()
    assert profile is not None, "the worker never ran the task"
    assert profile.figures["gold_accuracy"]["value"] == 1.0
    assert worker.poll() is None


@pytest.mark.django_db
def test_every_chart_spec_is_valid_plotly(rater, other_rater, guideline, make_comparison):
    from labelapp import charts

    for i in range(8):
        c = _gold(make_comparison, i)
        rate(rater=rater, comparison=c, preference=-2, a_left=i % 2 == 0, guideline=guideline)
        rate(rater=other_rater, comparison=c, preference=1, guideline=guideline)
        own = _ordinary(make_comparison, i)
        rate(rater=rater, comparison=own, preference=-2, a_left=i % 2 == 0, guideline=guideline)
        rate(rater=other_rater, comparison=own, preference=1, guideline=guideline)
    (report_id, *_) = quality.quality_refresh()
    specs = dict(QualityReport.objects.get(pk=report_id).charts)
    specs["rater"] = RaterProfile.objects.get(rater=rater).figures["chart"]
    specs["loss, one point"] = charts.line_chart("Loss", {"train loss": [(5.0, 0.7)]}, "step", "loss")
    specs["scatter"] = charts.scatter("Reward", {"a": [(1.0, 2.0), (float("nan"), 1.0)]}, "len", "reward")
    for name, spec in specs.items():
        assert spec["data"], name
        charts.validate(spec)  # plotly.graph_objects raises on any unknown or malformed property
    assert specs["loss, one point"]["data"][0]["mode"] == "lines+markers"  # a short run still shows
    assert specs["loss, one point"]["layout"]["legend"]["orientation"] == "h"  # under the plot


def test_trust_weighs_agreement_per_comparison_however_many_raters_share_it():
    # r1 against 4 unanimous others on 10 comparisons, no gold: trust reads 0 agreeing of 10
    # comparisons (not 0 of 40 rater pairs, which pushed it four times as far from the prior).
    import numpy as np

    from labelapp import metrics

    n = 50
    cols = {name: np.zeros(n, dtype=np.int32) for name in quality._COLUMNS}
    cols["comparison"] = np.repeat(np.arange(10), 5).astype(np.int32)
    cols["rater"] = np.tile(np.arange(1, 6), 10).astype(np.int32)
    cols["preference"] = np.tile([-2, 2, 2, 2, 2], 10).astype(np.int32)
    cols["words_a"] = cols["words_b"] = np.full(n, 50, dtype=np.int32)
    cols["time_ms"] = np.full(n, 20_000, dtype=np.int32)
    figures = quality.quality_compute(quality.Rows(cols), bootstrap=0)
    r1 = next(r for r in figures["raters"] if r["rater_id"] == 1)
    assert r1["agreement"]["n"] == 40  # the figure shown stays agreement over rater pairs
    assert r1["trust"] == pytest.approx(metrics.trust_weight(gold_correct=0, gold_n=0, agree=0, agree_n=10))
    assert r1["trust"] > metrics.trust_weight(gold_correct=0, gold_n=0, agree=0, agree_n=40)


@pytest.mark.django_db
def test_the_newest_review_decides_whether_a_rating_counts(
    rater, other_rater, guideline, make_comparison, staff
):
    # The app's rule (Rating.objects.not_excluded): the newest review is in force, so a rating excluded
    # and later confirmed trains and exports again, and must count in the quality figures too.
    c = make_comparison(required_ratings=2)
    r = rate(rater=rater, comparison=c, preference=-2, guideline=guideline)
    rate(rater=other_rater, comparison=c, preference=-2, guideline=guideline)

    def review(decision):
        RatingReview.objects.create(rating=r, decision=decision, reason=decision, reviewer=staff)

    def counted():
        return sorted(quality.quality_rows().rater.tolist())

    review(RatingReview.Decision.EXCLUDE)
    assert counted() == [other_rater.pk]
    review(RatingReview.Decision.CONFIRM)
    assert counted() == sorted([rater.pk, other_rater.pk])
    assert Rating.objects.not_excluded().filter(pk=r.pk).exists()
    review(RatingReview.Decision.EXCLUDE)
    assert counted() == [other_rater.pk]


def test_a_position_flag_needs_enough_judgments(settings):
    # the demo rater carried the position flag after 4 judgments, all on the right
    from labelapp.services.quality import _flags

    row = {
        "length_slope": {"lo": None},
        "p_left": {"value": 0.0, "lo": 0.0, "hi": 0.49, "n": 4},
        "gold_accuracy": {"n": 0, "value": None},
        "fast": {"n": 0, "value": None},
    }
    pool = {"length_slope": {"value": 0.0}}
    assert "position" not in _flags(row, pool)
    row["p_left"] = {"value": 0.0, "lo": 0.0, "hi": 0.16, "n": 20}
    assert "position" in _flags(row, pool)
    settings.QUALITY = {**settings.QUALITY, "POSITION_MIN_N": 30}
    assert "position" not in _flags(row, pool)


@pytest.mark.django_db
def test_a_version_whose_ratings_all_drop_out_gets_an_empty_report(rater, guideline, make_comparison, staff):
    """Reports were written only for versions with counted ratings: once every rating of a version was
    excluded its page kept the old figures, and a published version nobody rated yet said "the quality
    job has not run"."""
    from labelapp.services.guidelines import guideline_create

    v2 = guideline_create(text="# v2\n\nShorter is fine.", publish=True)
    v3 = guideline_create(text="# v3\n\nStill fine.", publish=True)
    mine = [
        rate(rater=rater, comparison=_ordinary(make_comparison, i), preference=2, guideline=v2)
        for i in range(4)
    ]
    quality.quality_refresh()
    assert QualityReport.objects.filter(guideline_version=v2).latest("computed_at").n_ratings == 4
    for r in mine:
        RatingReview.objects.create(
            rating=r, decision=RatingReview.Decision.EXCLUDE, reason="x", reviewer=staff
        )
    quality.quality_refresh()
    for version in (v2, v3):
        latest = (
            QualityReport.objects.filter(guideline_version=version).order_by("-computed_at", "-id").first()
        )
        assert latest is not None and latest.n_ratings == 0 and latest.figures["raters"] == []
    staff_client = Client()
    staff_client.force_login(staff)
    page = staff_client.get(f"/quality/?version={v2.number}").content.decode()
    assert "from 0 ratings" in page and "has not run" not in page


@pytest.mark.django_db
def test_the_pool_curve_keeps_its_place_beside_a_rater_named_pool(make_user, guideline, make_comparison):
    # the curves were keyed by name: a rater named "pool" replaced the pool's curve on the dashboard
    pool, other = make_user("pool"), make_user("other")
    for i in range(6):
        rate(rater=pool, comparison=_ordinary(make_comparison, i), preference=2, guideline=guideline)
        rate(rater=other, comparison=_ordinary(make_comparison, 50 + i), preference=-2, guideline=guideline)
    (report_id, *_) = quality.quality_refresh()
    names = [s["name"] for s in QualityReport.objects.get(pk=report_id).charts["longer"]["data"]]
    assert names[0].startswith("all raters (n=12)")
    assert any(n.startswith("pool (n=6)") for n in names)


@pytest.mark.django_db
def test_a_rater_name_is_shown_as_written_in_the_charts(make_user, guideline, make_comparison):
    # Plotly reads <b> and <a href> in chart text as markup: "r<b>x</b>" showed as a bold "rx"
    odd = make_user("r<b>x</b>&co")
    for i in range(6):
        rate(rater=odd, comparison=_ordinary(make_comparison, i), preference=2, guideline=guideline)
    (report_id, *_) = quality.quality_refresh()
    charts = QualityReport.objects.get(pk=report_id).charts
    names = [s["name"] for s in charts["longer"]["data"]]
    assert any(n.startswith("r&lt;b&gt;x&lt;/b&gt;&amp;co (n=6)") for n in names), names
    assert charts["position"]["data"][0]["x"] == ["r&lt;b&gt;x&lt;/b&gt;&amp;co"]


@pytest.mark.django_db
def test_ids_past_two_to_the_31_do_not_stop_the_refresh(rater, guideline):
    # the rows were int32: one comparison id past 2**31 made every refresh fail with OverflowError
    from labelapp.models import Prompt, Response

    p = Prompt.objects.create(text="big id")
    a = Response.objects.create(prompt=p, text="a", source_model="t")
    b = Response.objects.create(prompt=p, text="b b", source_model="t")
    c = Comparison.objects.create(id=2**31 + 10, prompt=p, response_a=a, response_b=b)
    stored_rating(rater=rater, comparison=c, preference=1, guideline=guideline)
    rows = quality.quality_rows()
    assert int(rows.comparison.max()) == 2**31 + 10
    quality.quality_refresh()
    assert RaterProfile.objects.get(rater=rater).figures["n"] == 1
