"""Rater quality: compute the figures of labelapp/metrics.py from the ratings, store trust weights and
dashboard reports.

The heavy pass (every rating, about 10 s per million on 2 cores) runs in the Celery task
`labelapp.tasks.quality_refresh` on the default queue, scheduled by beat; pages read the stored
`QualityReport` rows and `RaterProfile.figures` and never scan ratings. A PostgreSQL advisory lock
keeps two beats from computing at once.

Which ratings count: every rating not excluded in review, by the models' rule (the newest review is
in force: a rating excluded and later confirmed counts again, as it trains and exports again). The
bias and agreement figures read ordinary comparisons only (`ordinary`).
Lengths are word counts (what the rating page shows); reading speed is (prompt + both answers)
characters over time on task.

Flags (each a reason string on the rater's row):
- length: the rater's length slope is significantly above 0 and above the pool's (its 95% interval
  lies above both): they lean toward longer answers more than their colleagues on the same data;
- position: P(chose left) is significantly different from 0.5 (Wilson interval excludes it), on at
  least QUALITY["POSITION_MIN_N"] judgments;
- gold: gold accuracy below QUALITY["GOLD_MIN"] on at least QUALITY["GOLD_MIN_N"] gold judgments;
- speed: more than QUALITY["FAST_SHARE_MAX"] of judgments implausibly fast, on at least
  QUALITY["FAST_MIN_N"] judgments (one fast first judgment is no pattern).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, InterfaceError, connection, transaction
from django.utils import timezone

from labelapp import metrics
from labelapp.models import GuidelineVersion, QualityReport, RaterProfile, Rating
from labelapp.services.roles import permission_check

log = logging.getLogger(__name__)

_ADVISORY_LOCK = 604_001  # any constant unique to this job

_ROWS_SQL = """
SELECT r.rater_id, r.comparison_id, r.preference, r.time_on_task_ms, r.guideline_version_id,
       (a.shown_left = 'a')::int, ra.word_count, rb.word_count,
       char_length(p.text) + ra.char_count + rb.char_count,
       CASE c.kind WHEN 'gold' THEN 1 WHEN 'repeat' THEN 2 ELSE 0 END,
       COALESCE(c.gold_preference, {no_answer}), COALESCE(c.repeat_of_id, 0),
       c.response_a_id, c.response_b_id, r.flag_broken::int
FROM labelapp_rating r
JOIN labelapp_assignment a ON a.id = r.assignment_id
JOIN labelapp_comparison c ON c.id = r.comparison_id
JOIN labelapp_response ra ON ra.id = c.response_a_id
JOIN labelapp_response rb ON rb.id = c.response_b_id
JOIN labelapp_prompt p ON p.id = c.prompt_id
WHERE r.id NOT IN ({excluded})
"""
_COLUMNS = (
    "rater comparison preference time_ms version a_left words_a words_b chars kind gold repeat_of "
    "response_a response_b broken"
).split()


def _cfg(key: str):
    return settings.QUALITY[key]


NO_GOLD_ANSWER = -9  # the gold column of a rating whose comparison has no expected answer


@dataclass
class Rows:
    """One numpy array per column of `_ROWS_SQL` (one element per rating)."""

    cols: dict[str, np.ndarray]

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.cols[name]
        except KeyError:
            raise AttributeError(name) from None

    def __len__(self) -> int:
        return int(self.cols["rater"].size)

    def subset(self, mask: np.ndarray) -> Rows:
        return Rows({k: v[mask] for k, v in self.cols.items()})


def _rows_query() -> tuple[str, tuple]:
    """`_ROWS_SQL` with the ratings in force as excluded taken from `Rating.objects.excluded()`, so
    training, export and these figures share one definition of "excluded" (reviews are few: the
    subquery is a small hashed set)."""
    excluded, params = Rating.objects.excluded().order_by().values("pk").query.sql_with_params()
    return _ROWS_SQL.format(excluded=excluded, no_answer=NO_GOLD_ANSWER), params


def quality_rows() -> Rows:
    """Every counted rating as arrays, fetched in chunks (a million ratings: ~112 MB of int64; ids are
    64-bit, and one past 2**31 stopped every refresh with an OverflowError in int32)."""
    chunks = []
    with connection.cursor() as cursor:
        cursor.execute(*_rows_query())
        while True:
            batch = cursor.fetchmany(50_000)
            if not batch:
                break
            chunks.append(np.array(batch, dtype=np.int64))
    data = np.concatenate(chunks) if chunks else np.zeros((0, len(_COLUMNS)), dtype=np.int64)
    return Rows({name: data[:, i] for i, name in enumerate(_COLUMNS)})


# --- figures -------------------------------------------------------------------------------------------


def _retest_pairs(rows: Rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rater, first preference, repeat preference) for each repeat a rater judged along with its
    original; the repeat's preference is flipped when the repeat swapped answers A and B."""
    is_repeat = (rows.kind == 2) & (rows.repeat_of > 0)
    if not is_repeat.any():
        empty = np.array([], dtype=np.int64)
        return empty, empty, empty
    # Only the originals of repeats are looked up (not a dict over every rating).
    originals = np.flatnonzero(np.isin(rows.comparison, rows.repeat_of[is_repeat]))
    first = {
        (int(rows.rater[i]), int(rows.comparison[i])): (int(rows.preference[i]), int(rows.response_a[i]), 0)
        for i in originals.tolist()
    }
    out_r, out_1, out_2 = [], [], []
    idx = np.flatnonzero(is_repeat)
    for i in idx.tolist():
        original = first.get((int(rows.rater[i]), int(rows.repeat_of[i])))
        if original is None:
            continue
        p1, a1, _ = original
        p2 = int(rows.preference[i])
        if int(rows.response_a[i]) != a1:
            p2 = -p2  # the repeat shows the same answers as B / A
        out_r.append(int(rows.rater[i]))
        out_1.append(p1)
        out_2.append(p2)
    return np.array(out_r), np.array(out_1), np.array(out_2)


def ordinary(rows: Rows) -> Rows:
    """The ratings that measure a rater's length and position bias and the raters' agreement: neither
    gold pairs (built so that the longer answer is the wrong one: passing them reads as a preference
    for short answers; and every rater is served the same few, so one gold pair made a pair of raters
    out of every two of them, and easy gold set the pool's agreement, kappa and alpha, and counted
    twice in a trust weight, once as gold accuracy and once as agreement) nor repeats (a pair judged
    twice would count twice) nor ratings flagged broken (the rater could not read an answer: their
    preference says nothing about taste, and training and the policy watch leave them out too)."""
    return rows.subset((rows.kind == 0) & (rows.broken == 0))


def _figures(rows: Rows) -> dict:
    """Pool-level figures of a set of ratings (no per-rater split)."""
    fast = _cfg("FAST_CHARS_PER_S")
    # a gold pair stored without its expected answer (only a script can make one) is not scored: its
    # stand-in value read as "A better" was expected
    gold = (rows.kind == 1) & (rows.gold != NO_GOLD_ANSWER)
    _, first, second = _retest_pairs(rows)
    retest = metrics.test_retest(first, second)
    speed = metrics.reading_speed(rows.chars, rows.time_ms, fast_chars_per_s=fast)
    return {
        "n": len(rows),
        **_bias_figures(ordinary(rows)),
        "gold_accuracy": metrics.gold_accuracy(rows.preference[gold], rows.gold[gold]).as_dict(),
        "retest_agreement": retest["sign_agreement"].as_dict(),
        "retest_mean_abs_diff": retest["mean_abs_diff"].as_dict(),
        "speed": speed["median_chars_per_s"].as_dict(),
        "fast": speed["fast"].as_dict(),
        "n_fast": speed["n_fast"],
    }


def _bias_figures(bias: Rows) -> dict:
    """P(chose longer), P(chose left) and the length and position bias fit of these ratings."""
    fits = metrics.bias_fit(bias.preference, bias.words_a, bias.words_b, bias.a_left.astype(bool))
    return {
        "p_longer": metrics.p_longer(
            bias.preference, bias.words_a, bias.words_b, min_ratio=_cfg("MIN_LENGTH_RATIO")
        ).as_dict(),
        "p_left": metrics.p_left(bias.preference, bias.a_left.astype(bool)).as_dict(),
        "length_slope": fits["length_slope"].as_dict(),
        "position": fits["position"].as_dict(),
    }


def _own_view(sub: Rows) -> dict:
    """A rater's length and position figures as their own page shows them with GOLD_FEEDBACK off: from
    every judgment they gave but those they flagged broken. From ordinary pairs only (the staff view),
    a judgment of a gold pair or a repeat left them as they were while any other moved them, and a
    rater comparing the page across refreshes learnt which pairs had been gold."""
    mine = sub.subset(sub.broken == 0)
    return {
        **_bias_figures(mine),
        "longer_curve": metrics.longer_curve(mine.preference, mine.words_a, mine.words_b),
    }


def _flags(row: dict, pool: dict) -> list[str]:
    flags = []
    slope, pool_slope = row["length_slope"], pool["length_slope"]["value"] or 0.0
    if slope["lo"] is not None and slope["lo"] > max(0.0, pool_slope):
        flags.append("length")
    left = row["p_left"]
    if (
        left["n"] >= _cfg("POSITION_MIN_N")
        and left["lo"] is not None
        and (left["lo"] > 0.5 or left["hi"] < 0.5)
    ):
        flags.append("position")
    gold = row["gold_accuracy"]
    if gold["n"] >= _cfg("GOLD_MIN_N") and gold["value"] < _cfg("GOLD_MIN"):
        flags.append("gold")
    fast = row["fast"]
    if fast["n"] >= _cfg("FAST_MIN_N") and fast["value"] > _cfg("FAST_SHARE_MAX"):
        flags.append("speed")
    return flags


def quality_compute(
    rows: Rows, *, usernames: dict[int, str] | None = None, bootstrap: int | None = None
) -> dict:
    """Pool figures, agreement, Krippendorff's alpha, kappa per rater pair and one row per rater
    (with trust weight and flags) for a set of ratings."""
    bootstrap = _cfg("BOOTSTRAP") if bootstrap is None else bootstrap
    pool = _figures(rows)
    shared = ordinary(rows)
    agreement = metrics.pairwise_sign_agreement(shared.comparison, shared.rater, shared.preference)
    pool["agreement"] = agreement["pool"].as_dict()
    pool["alpha"] = metrics.krippendorff_alpha(
        shared.comparison, shared.preference, bootstrap=bootstrap
    ).as_dict()
    kappas = metrics.cohen_kappa_pairs(
        shared.comparison, shared.rater, shared.preference, min_overlap=_cfg("KAPPA_MIN_OVERLAP")
    )
    values = [k["value"] for k in kappas if k["value"] is not None]
    pool["kappa_median"] = float(np.median(values)) if values else None
    pool["kappa_pairs"] = len(kappas)

    raters = []
    if len(rows):
        order = np.argsort(rows.rater, kind="stable")
        ids, starts = np.unique(rows.rater[order], return_index=True)
        bounds = list(starts) + [order.size]
        for j, rid in enumerate(ids.tolist()):
            sub = rows.subset(order[bounds[j] : bounds[j + 1]])
            row = _figures(sub)
            a, t = agreement["agree"].get(rid, (0, 0))
            row["agreement"] = metrics.wilson(a, t).as_dict()
            # trust counts shared comparisons, not rater pairs: the prior is worth 10 judgments
            a, t = agreement["agree_units"].get(rid, (0.0, 0))
            gold_n = row["gold_accuracy"]["n"]
            gold_correct = round((row["gold_accuracy"]["value"] or 0.0) * gold_n)
            row["trust"] = metrics.trust_weight(gold_correct=gold_correct, gold_n=gold_n, agree=a, agree_n=t)
            own = ordinary(sub)
            row["longer_curve"] = metrics.longer_curve(own.preference, own.words_a, own.words_b)
            if not settings.LABEL["GOLD_FEEDBACK"]:
                row["own_view"] = _own_view(sub)
            row["rater_id"] = rid
            row["rater"] = (usernames or {}).get(rid, str(rid))
            row["flags"] = _flags(row, pool)
            raters.append(row)
    top_pairs = sorted(kappas, key=lambda k: -k["n"])[:200]
    for k in top_pairs:
        k["names"] = [(usernames or {}).get(r, str(r)) for r in k["raters"]]
    return {"pool": pool, "raters": raters, "kappa_pairs": top_pairs}


def _withheld_count(estimate: dict) -> dict:
    """An estimate as a rater sees it with feedback off: its value to two decimals (the page shows
    two), no count and no interval (a Wilson interval with its value gives the count back)."""
    value = estimate.get("value")
    rounded = round(value, 2) if isinstance(value, int | float) and not isinstance(value, bool) else value
    return {**estimate, "value": rounded, "lo": None, "hi": None, "n": None}


def figures_for_rater(figures: dict) -> dict:
    """What a rater sees of their own figures (staff see all of them). With GOLD_FEEDBACK off, no gold
    accuracy and no count that leaves gold pairs out: the gold figure's n, or the length and position
    figures' n (ordinary pairs only) beside the total, compared across refreshes with the rater's own
    list of ratings, says which recent pairs were gold, which is exactly what feedback off keeps from
    them. An interval gives its count back (from a value and its Wilson bounds the count can be solved
    for), so the estimates show their values only, and the chart no error bars. The total number of
    judgments stays (it counts every pair). The length and position values are the rater's own view
    (`_own_view`, every judgment): from ordinary pairs only, they did not move after a gold judgment."""
    if settings.LABEL["GOLD_FEEDBACK"]:
        return figures
    from labelapp import charts

    shown = {}
    # from every judgment (computed while feedback was off; a refresh since it was turned off adds it)
    for key, value in {**figures, **figures.get("own_view", {})}.items():
        if key in ("gold_accuracy", "own_view"):
            continue
        if isinstance(value, dict) and "value" in value and "n" in value:
            value = _withheld_count(value)  # an estimate
        shown[key] = value
    curve = figures.get("own_view", {}).get("longer_curve") or figures.get("longer_curve")
    if curve:
        curve = {**curve, "bins": [_withheld_count(b) for b in curve.get("bins", [])]}
        shown["longer_curve"] = curve
    shown["chart"] = charts.rater_longer_chart(curve, counts=False) if curve else {}
    return shown


def _usernames(ids) -> dict[int, str]:
    return dict(get_user_model().objects.filter(pk__in=list(ids)).values_list("pk", "username"))


# --- the job ------------------------------------------------------------------------------------------


def _try_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_ADVISORY_LOCK])
        return bool(cursor.fetchone()[0])


def _unlock() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_ADVISORY_LOCK])
    except (DatabaseError, InterfaceError):
        # the connection broke (the error being raised says why): closing it ends the session, which
        # frees the lock (a session left open, say in an aborted transaction, would keep it, and every
        # later refresh would be skipped). Raised from `finally`, this error replaced the real one.
        log.warning("quality refresh: could not release its lock; closing the database connection")
        connection.close()


def cache_key(version_id: int | None) -> str:
    """Prefix of the cache keys of a scope's reports (the report id follows)."""
    return f"quality:report:{version_id or 'all'}"


def quality_refresh() -> list[int] | None:
    """Recompute every report (all versions, then each version with ratings), the raters' figures and
    trust weights. Returns the new report ids, or None when another refresh holds the lock."""
    from labelapp import charts

    if not _try_lock():
        # said: a refresh that hangs holding the lock turned every later one into a silent no-op
        log.info("quality refresh skipped: another refresh holds the lock")
        return None
    try:
        started = time.monotonic()
        rows = quality_rows()
        names = _usernames(np.unique(rows.rater).tolist())
        versions = dict(GuidelineVersion.objects.values_list("pk", "number"))
        scopes: list[tuple[int | None, Rows]] = [(None, rows)]
        for vid in sorted(_report_versions(rows), key=lambda v: versions.get(v, 0)):
            scopes.append((vid, rows.subset(rows.version == vid)))
        results = {}
        for vid, sub in scopes:
            t0 = time.monotonic()
            results[vid] = (quality_compute(sub, usernames=names), sub, time.monotonic() - t0)
        curves = {r["rater_id"]: r.pop("longer_curve") for r in results[None][0]["raters"]}
        for vid, _ in scopes[1:]:
            for r in results[vid][0]["raters"]:
                r.pop("longer_curve")  # the pages show per-rater curves from the profile only
        by_version = [
            {"version": versions.get(vid), **results[vid][0]["pool"]}
            for vid, sub in scopes
            if vid is not None and len(sub)
        ]
        report_ids = []
        with transaction.atomic():
            for vid, (figures, sub, seconds) in results.items():
                figures["by_version"] = by_version
                chart_specs = charts.quality_charts(figures, sub, speed_cap=_cfg("FAST_CHARS_PER_S") * 2)
                report = QualityReport.objects.create(
                    guideline_version_id=vid, n_ratings=len(sub), figures=figures, charts=chart_specs,
                    seconds=seconds,
                )  # fmt: skip
                report_ids.append(report.pk)
            _store_profiles(results[None][0]["raters"], curves, charts)
            # Old reports are history nobody reads; keep the last few per scope.
            keep = _cfg("REPORTS_KEPT")
            for vid in results:
                old = QualityReport.objects.filter(guideline_version_id=vid).values_list("pk", flat=True)[
                    keep:
                ]
                QualityReport.objects.filter(pk__in=list(old)).delete()
        # Pages cache a report under its id (quality_selectors): a new report needs no invalidation.
        log.info("quality refresh: %d ratings in %.1f s", len(rows), time.monotonic() - started)
        return report_ids
    finally:
        _unlock()


def _report_versions(rows: Rows) -> set[int]:
    """Versions that get a report: those with counted ratings, and every published one, so a version
    whose ratings were all excluded gets an empty report instead of keeping its last figures, and one
    nobody rated yet does not read as "the quality job has not run"."""
    published = GuidelineVersion.objects.filter(published_at__isnull=False).values_list("pk", flat=True)
    return set(np.unique(rows.version).tolist()) | set(published)


def _store_profiles(raters: list[dict], curves: dict, charts) -> None:
    """Trust weight and figures per rater, with the rater's own chart ready for their page."""
    now = timezone.now()
    existing = {
        p.rater_id: p for p in RaterProfile.objects.filter(rater_id__in=[r["rater_id"] for r in raters])
    }
    new = []
    for row in raters:
        curve = curves.get(row["rater_id"])
        row = {**row, "longer_curve": curve, "chart": charts.rater_longer_chart(curve) if curve else {}}
        profile = existing.get(row["rater_id"])
        if profile is None:
            new.append(RaterProfile(rater_id=row["rater_id"], trust_weight=row["trust"], figures=row))
        else:
            profile.trust_weight, profile.figures, profile.updated_at = row["trust"], row, now
    RaterProfile.objects.bulk_create(new)
    # A rater with no counted rating left (all excluded in review) goes back to the default weight.
    RaterProfile.objects.exclude(rater_id__in=[r["rater_id"] for r in raters]).exclude(figures={}).update(
        trust_weight=1.0, figures={}, updated_at=now
    )
    RaterProfile.objects.bulk_update(
        list(existing.values()), ["trust_weight", "figures", "updated_at"], batch_size=500
    )


def quality_refresh_request(*, by) -> None:
    """Queue a recomputation now (the dashboard's button); NotPermitted when `by` may not."""
    from labelapp.tasks import quality_refresh

    permission_check(by, "quality_refresh")
    quality_refresh.apply_async(queue="default")
