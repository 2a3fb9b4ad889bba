"""labelapp.metrics against small tables computed by hand (the numbers are in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labelapp import metrics


def test_wilson_matches_the_textbook_interval():
    # 8 of 10: p = 0.8, z^2 = 3.8415; centre = (0.8 + 0.19207) / 1.38415 = 0.71674,
    # half = 1.96 * sqrt(0.016 + 0.0096) / 1.38415 = 0.22656 -> [0.4902, 0.9433]
    est = metrics.wilson(8, 10)
    assert est.value == pytest.approx(0.8)
    assert est.lo == pytest.approx(0.4902, abs=1e-4)
    assert est.hi == pytest.approx(0.9433, abs=1e-4)
    assert metrics.wilson(0, 0).value is None


def test_p_longer_leaves_out_ties_equal_lengths_and_small_ratios():
    # rows: (pref, words_a, words_b)
    rows = [
        (-2, 10, 30),  # chose A, the shorter -> 0
        (1, 10, 30),  # chose B, the longer -> 1
        (3, 10, 40),  # longer -> 1
        (-1, 50, 10),  # chose A, the longer -> 1
        (0, 10, 40),  # tie: left out
        (2, 20, 20),  # equal length: left out
        (1, 100, 105),  # ratio 1.05 < 1.2: left out
    ]
    pref, wa, wb = map(np.array, zip(*rows, strict=True))
    est = metrics.p_longer(pref, wa, wb, min_ratio=1.2)
    assert (est.n, est.value) == (4, 0.75)


def test_p_left_counts_the_shown_side():
    # (pref, A on the left): chose A & A left -> left; chose B & A left -> right; chose B & B left -> left
    pref = np.array([-1, 2, 3, -3, 0])
    a_left = np.array([True, True, False, False, True])
    est = metrics.p_left(pref, a_left)
    # left, right, left, right; the tie is left out -> 2 / 4
    assert (est.n, est.value) == (4, 0.5)


def test_gold_accuracy_counts_a_tie_as_wrong_on_a_gold_with_a_winner():
    est = metrics.gold_accuracy(np.array([-3, -1, 2, 0, 0]), np.array([-1, -1, -1, -1, 0]))
    # right, right, wrong, wrong (tie on a winner), right (tie on a tie gold) -> 3/5
    assert (est.n, est.value) == (5, 0.6)


def test_pairwise_agreement_treats_a_tie_as_its_own_category():
    # unit 1: r1 A, r2 A, r3 B -> pairs (1,2) agree, (1,3) no, (2,3) no
    # unit 2: r1 tie, r2 tie -> agree;  unit 3: r1 tie, r3 B -> no;  unit 4: only r2 -> no pair
    unit = [1, 1, 1, 2, 2, 3, 3, 4]
    rater = [1, 2, 3, 1, 2, 1, 3, 2]
    pref = [-2, -1, 3, 0, 0, 0, 1, 2]
    out = metrics.pairwise_sign_agreement(unit, rater, pref)
    assert (out["pool"].n, out["pool"].value) == (5, 0.4)
    per = out["per_rater"]
    assert (per[1].n, per[1].value) == (4, 0.5)  # (1,2) yes, (1,3) no, unit 2 yes, unit 3 no
    assert (per[3].n, per[3].value) == (3, 0.0)
    # per shared unit: r1 1/2 + 1 + 0 over 3 units; r2 1/2 + 1 over 2 (unit 4 is shared with nobody)
    assert out["agree_units"] == {1: (1.5, 3), 2: (1.5, 2), 3: (0.0, 2)}


def test_trust_counts_shared_comparisons_not_rater_pairs():
    # 10 comparisons, each judged by r1 and by 4 others who all disagree with r1. Counted in rater
    # pairs that was 0 of 40, which outweighed the prior (worth 10 judgments) four times over.
    unit = [u for u in range(10) for _ in range(5)]
    rater = [1, 2, 3, 4, 5] * 10
    pref = [-2, 2, 2, 2, 2] * 10
    assert metrics.pairwise_sign_agreement(unit, rater, pref)["agree_units"][1] == (0.0, 10)


def test_cohen_kappa_per_pair_with_enough_overlap():
    # r1: A A B B T, r2: A B B B T -> po = 0.8; pe = .4*.2 + .4*.6 + .2*.2 = .36
    # kappa = (0.8 - 0.36) / 0.64 = 0.6875; SE = sqrt(.8*.2 / (5 * .64^2)) = 0.27951
    unit = [1, 2, 3, 4, 5] * 2 + [1, 2]
    rater = [1] * 5 + [2] * 5 + [3, 3]
    pref = [-1, -2, 1, 3, 0, -1, 2, 1, 1, 0, 1, 1]
    pairs = metrics.cohen_kappa_pairs(unit, rater, pref, min_overlap=5)
    assert [p["raters"] for p in pairs] == [[1, 2]]  # rater 3 shares only 2 units
    assert pairs[0]["value"] == pytest.approx(0.6875)
    assert pairs[0]["value"] - pairs[0]["lo"] == pytest.approx(1.96 * 0.27951, abs=1e-3)
    assert pairs[0]["hi"] == 1.0  # 0.6875 + 0.548 = 1.24: kappa is at most 1


@pytest.mark.parametrize(
    "confusion",
    [[[5, 0, 0], [0, 0, 0], [1, 0, 4]], [[8, 1, 0], [0, 0, 0], [0, 0, 1]], [[1, 5, 0], [4, 0, 0], [0, 0, 0]]],
)
def test_a_kappa_interval_stays_where_kappa_can_be(confusion):
    # kappa = (po - pe) / (1 - pe) with po in [0, 1]: between -pe / (1 - pe) and 1. The normal interval
    # ran past both ends at 10 shared comparisons (0.8 [0.43, 1.17]; -0.8 [-1.17, -0.43])
    c = np.asarray(confusion, dtype=float)
    pe = float((c.sum(axis=1) / c.sum()) @ (c.sum(axis=0) / c.sum()))
    kappa, lo, hi, n = metrics.kappa_from_confusion(confusion)
    assert n == 10 and -pe / (1 - pe) - 1e-12 <= lo < kappa < hi <= 1.0


def test_kappa_matches_scikit_learn_on_random_labels():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(2)
    a = rng.integers(-1, 2, 200)
    b = np.where(rng.random(200) < 0.6, a, rng.integers(-1, 2, 200))
    unit = np.concatenate([np.arange(200), np.arange(200)])
    rater = np.array([1] * 200 + [2] * 200)
    (pair,) = metrics.cohen_kappa_pairs(unit, rater, np.concatenate([a, b]))
    assert pair["value"] == pytest.approx(cohen_kappa_score(a, b), abs=1e-6)


def test_perfect_agreement_on_few_units_has_a_kappa_interval_wider_than_a_point():
    # 6 of 6 agree (A A B B T T each): po = 1, pe = 1/3, kappa = 1; the large-sample SE is 0, which
    # claimed [1.00, 1.00] from six judgments. Wilson on po (6/6: [0.610, 1]) mapped onto kappa instead.
    kappa, lo, hi, n = metrics.kappa_from_confusion([[2, 0, 0], [0, 2, 0], [0, 0, 2]])
    assert (kappa, n, hi) == (pytest.approx(1.0), 6, pytest.approx(1.0))
    assert lo == pytest.approx((metrics.wilson(6, 6).lo - 1 / 3) / (2 / 3)) and lo < 0.5


def test_kappa_is_undefined_when_both_raters_only_ever_gave_one_label():
    # chance agreement is 1, so kappa is 0/0: no figure (scikit-learn gives nan), not a perfect 1.0
    assert metrics.kappa_from_confusion([[0, 0, 0], [0, 0, 0], [0, 0, 12]]) == (None, None, None, 12)


def test_krippendorff_alpha_ordinal_agrees_with_the_package_on_raw_data():
    import krippendorff

    rng = np.random.default_rng(1)
    truth = rng.integers(-3, 4, 40)
    data = np.clip(truth[None, :] + rng.integers(-1, 2, (3, 40)), -3, 3).astype(float)
    data[0, :5] = np.nan  # rater 1 missed five units
    expected = krippendorff.alpha(
        reliability_data=data, level_of_measurement="ordinal", value_domain=list(range(-3, 4))
    )
    unit, pref = [], []
    for r in range(3):
        for u in range(40):
            if not math.isnan(data[r, u]):
                unit.append(u)
                pref.append(int(data[r, u]))
    est = metrics.krippendorff_alpha(unit, pref, bootstrap=50)
    assert est.value == pytest.approx(expected)
    assert est.lo < est.value < est.hi
    assert est.n == 40


def test_krippendorff_interval_from_smaller_resamples_matches_the_full_bootstrap():
    rng = np.random.default_rng(3)
    truth = rng.integers(-3, 4, 600)
    unit = np.repeat(np.arange(600), 3)
    pref = np.clip(np.repeat(truth, 3) + rng.integers(-2, 3, 1800), -3, 3)
    full = metrics.krippendorff_alpha(unit, pref, bootstrap=100)
    scaled = metrics.krippendorff_alpha(unit, pref, bootstrap=100, max_units=150)
    assert scaled.value == full.value
    assert (scaled.hi - scaled.lo) == pytest.approx(full.hi - full.lo, rel=0.35)


def test_krippendorff_alpha_is_one_for_perfect_agreement():
    unit = [1, 1, 2, 2, 3, 3]
    pref = [-3, -3, 0, 0, 2, 2]
    assert metrics.krippendorff_alpha(unit, pref, bootstrap=0).value == pytest.approx(1.0)


def test_bias_fit_recovers_a_known_length_slope_and_position_pull():
    rng = np.random.default_rng(0)
    n = 6000
    wa = rng.integers(20, 400, n)
    wb = rng.integers(20, 400, n)
    a_left = rng.random(n) < 0.5
    x = np.log(wb / wa)
    pos = np.where(a_left, -1.0, 1.0)
    chose_b = rng.random(n) < 1 / (1 + np.exp(-(1.5 * x + 0.4 * pos)))
    pref = np.where(chose_b, 2, -2)
    fit = metrics.bias_fit(pref, wa, wb, a_left)
    assert fit["length_slope"].lo < 1.5 < fit["length_slope"].hi
    assert fit["position"].lo < 0.4 < fit["position"].hi
    assert fit["length_slope"].value == pytest.approx(1.5, abs=0.15)


def test_a_rater_who_always_took_the_longer_answer_has_a_length_slope_clearly_above_zero():
    # the clearest case went unflagged: separated data made the Fisher interval [-4.8, 40.6]
    rng = np.random.default_rng(1)
    n = 200
    short = rng.integers(20, 200, n)
    long = (short * rng.uniform(1.3, 3.0, n)).astype(int)
    b_longer = rng.random(n) < 0.5
    wa, wb = np.where(b_longer, short, long), np.where(b_longer, long, short)
    a_left = rng.random(n) < 0.5
    fit = metrics.bias_fit(np.where(b_longer, 2, -2), wa, wb, a_left)
    assert fit["length_slope"].lo > 2.0
    assert fit["position"].lo < 0 < fit["position"].hi  # sides were random: no position pull


def test_longer_curve_bins_and_slope():
    pref = np.array([1, 1, 1, -1, 1, -1])
    wa = np.array([10, 10, 10, 10, 10, 10])
    wb = np.array([11, 11, 30, 30, 100, 100])
    curve = metrics.longer_curve(pref, wa, wb)
    assert [b["n"] for b in curve["bins"]] == [2, 2, 2]
    assert [b["value"] for b in curve["bins"]] == [1.0, 0.5, 0.5]
    # a ratio past e^9 (1 word against 20,000) was fitted but in no bin
    wide = metrics.longer_curve(np.array([1, 1, -1]), np.array([1, 1, 1]), np.array([20000, 5, 3]))
    assert sum(b["n"] for b in wide["bins"]) == 3


def test_a_won_scores_each_judgment_for_answer_a():
    assert metrics.a_won([-3, -1, 0, 2]).tolist() == [1.0, 1.0, 0.5, 0.0]


def test_profile_bounds_of_few_one_sided_judgments_are_the_true_ones():
    # the refit of the other coefficient took full Newton steps: on 3 judgments all one way it ran to
    # about 2,000 and read a log-likelihood of -4,000 (the best is -0.9), so the bounds stopped short:
    # length slope [2.52, 41.97] flagged the rater as length-biased, though 0 is inside the interval;
    # the policy watch's win rate had a lower bound of 0.50 on 1 win in 4. Bounds checked against a
    # grid maximisation of the profile likelihood.
    fit = metrics.bias_fit(
        np.array([-2, -2, -2]), np.array([96, 131, 54]), np.array([97, 36, 28]), np.array([True, True, False])
    )
    assert fit["length_slope"].lo == pytest.approx(-0.147, abs=0.01) and fit["length_slope"].lo < 0
    assert fit["length_slope"].hi == pytest.approx(41.97, abs=0.01)
    assert (fit["position"].lo, fit["position"].hi) == pytest.approx((-1.82, 32.63), abs=0.01)
    watch = metrics.length_controlled_win_rate(
        won=[0, 0, 1, 0],
        log_ratio=[-0.2593, -0.7174, -0.3359, -0.9318],
        same_won=[1],
        same_log_ratio=[0.0483],
    )
    assert watch["win_rate"].lo == pytest.approx(0.0196, abs=0.002)


def test_length_controlled_win_rate_without_length_differences_is_the_raw_rate():
    # Equal lengths, no new-vs-new pairs: theta = logit(mean won); ties count half: (1+1+0.5+0)/4.
    out = metrics.length_controlled_win_rate([1, 1, 0.5, 0], [0, 0, 0, 0])
    assert out["win_rate"].value == pytest.approx(0.625, abs=1e-3)
    assert out["win_rate"].lo < 0.625 < out["win_rate"].hi and out["win_rate"].n == 4


def test_a_policy_that_loses_every_comparison_has_an_interval_below_one_half():
    # separation: the Fisher interval of theta was [0, 1], so auto-reject (interval below one half)
    # never rejected the worst version; the profile likelihood stays finite where the data speak
    rng = np.random.default_rng(0)
    same_x, same_won = rng.normal(0, 0.3, 20), (rng.random(20) < 0.5).astype(float)
    out = metrics.length_controlled_win_rate([0.0] * 40, [0.0] * 40, same_won, same_x)["win_rate"]
    assert out.value < 0.01 and out.lo == pytest.approx(0.0, abs=1e-6) and 0.03 < out.hi < 0.06
    # 8 of 40: close to the exact (Clopper-Pearson) [0.09, 0.36] at equal lengths
    out = metrics.length_controlled_win_rate([1.0] * 8 + [0.0] * 32, [0.0] * 40, same_won, same_x)["win_rate"]
    assert out.value == pytest.approx(0.2, abs=1e-3) and 0.08 < out.lo < 0.11 and 0.32 < out.hi < 0.37


def test_length_controlled_win_rate_takes_out_the_length_pull_measured_on_same_policy_pairs():
    # Same policy on both sides: the longer (twice the words, x = log 2) wins 8 of 10, and with the
    # shorter as A, A wins 2 of 10, so slope = logit(0.8) / log 2 = 2.0. New vs parent, the new
    # answer twice as long, wins 7 of 10: theta = logit(0.7) - 2.0 * log 2 = -0.539, and at equal
    # length the new policy wins sigmoid(-0.539) = 0.368 (the model is saturated: the fit is exact).
    x = math.log(2)
    same_won = [1] * 8 + [0] * 2 + [1] * 2 + [0] * 8
    same_x = [x] * 10 + [-x] * 10
    out = metrics.length_controlled_win_rate([1] * 7 + [0] * 3, [x] * 10, same_won, same_x)
    assert out["length_slope"].value == pytest.approx(2.0, abs=1e-2)
    assert out["win_rate"].value == pytest.approx(0.368, abs=2e-3)
    assert out["win_rate"].lo < 0.368 < out["win_rate"].hi  # wide: slope and theta share the x = log 2 rows
    assert metrics.length_controlled_win_rate([1], [x])["win_rate"].value is None  # too few to fit
    assert metrics.length_controlled_win_rate([1, 0], [x, -x])["win_rate"].value is None  # 2 rows, 2 unknowns


def test_test_retest():
    out = metrics.test_retest([-3, -1, 2, 0], [-2, 1, 2, 0])
    assert (out["sign_agreement"].n, out["sign_agreement"].value) == (4, 0.75)
    assert out["mean_abs_diff"].value == pytest.approx((1 + 2 + 0 + 0) / 4)
    # a small mean of absolute differences: the interval stops at 0, not below it
    low = metrics.test_retest([3, 3, 3, 3, 3], [3, 3, 3, 3, 1])["mean_abs_diff"]
    assert low.value == pytest.approx(0.4) and low.lo == 0.0 and low.hi > 0.4
    # hand-computed t interval: diffs 1, 2, 0, 0: sd 0.9574, t(0.975, 3) 3.1824: 0.75 +- 1.5234
    mad = out["mean_abs_diff"]
    assert (mad.lo, mad.hi) == (0.0, pytest.approx(2.2734, abs=1e-3))


def test_identical_retest_differences_still_have_an_interval():
    # sd 0 made the normal interval a single point at any n: 6.0 [6.0, 6.0] on two repeats
    two = metrics.test_retest([3, 3], [-3, -3])["mean_abs_diff"]
    assert two.value == 6.0 and two.hi == 6.0 and two.lo < 6.0
    # Hoeffding: 6 sqrt(ln(40) / 200) = 0.8149 at n = 100
    same = metrics.test_retest([1] * 100, [1] * 100)["mean_abs_diff"]
    assert (same.value, same.lo, same.hi) == (0.0, 0.0, pytest.approx(0.8149, abs=1e-3))


def test_reading_speed_and_fast_judgments():
    chars = np.array([1000, 1000, 1000, 1000])
    ms = np.array([50_000, 20_000, 5_000, 0])  # 20, 50, 200 chars/s, no time
    out = metrics.reading_speed(chars, ms, fast_chars_per_s=60)
    assert out["median_chars_per_s"].value == pytest.approx(50.0)
    assert out["n_fast"] == 2
    assert out["fast"].value == pytest.approx(0.5)


def test_median_interval_from_order_statistics():
    # n = 100: ranks 50 -/+ 1.96 * 10 / 2 = 40.2 .. 59.8 -> sorted[40] and sorted[60] (0-based)
    est = metrics.median_interval(np.arange(100.0))
    assert (est.value, est.lo, est.hi, est.n) == (49.5, 40.0, 60.0, 100)
    # below 6 values no pair of order statistics holds the median with 95%: n = 1 gave [v, v], n = 3
    # an interval that holds it 75% of the time, both shown as 95%
    for n in (1, 3, 5):
        est = metrics.median_interval(np.arange(float(n)))
        assert (est.lo, est.hi, est.n) == (None, None, n) and est.value == (n - 1) / 2
    six = metrics.median_interval(np.arange(6.0))
    assert six.lo is not None and six.lo <= 2.5 <= six.hi


def test_trust_weight_formula():
    # No data: the priors -> exactly 1.0 (same as a rater without a profile).
    assert metrics.trust_weight(gold_correct=0, gold_n=0, agree=0, agree_n=0) == pytest.approx(1.0)
    # Coin level on plenty of data -> the floor.
    assert metrics.trust_weight(gold_correct=500, gold_n=1000, agree=500, agree_n=1000) < 0.1
    # Perfect gold, agreement 0.7 on 100 pairs: s_gold = (100+8)/110 -> 0.9636, s_agree = 0.4
    # s = 0.7*0.9636 + 0.3*0.4 = 0.7945; s_prior = 0.7*0.6 + 0.3*0.4 = 0.54 -> 1.4714
    assert metrics.trust_weight(gold_correct=100, gold_n=100, agree=70, agree_n=100) == pytest.approx(
        1.4714, abs=1e-3
    )
